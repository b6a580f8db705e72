"""`serve --parallel N` loads N slots (and a default that fits); the layer map's control."""

from __future__ import annotations

import subprocess
import sys

import httpx

from layerlab.ui.layer_map.controls import PlanControls
from tests.spine.test_serve import H, start_serve, stop


def test_serve_parallel_sets_the_slots():
    proc, base = start_serve("--ctx", "512", "--parallel", "3")
    try:
        props = httpx.get(base + "/props", headers=H, timeout=10).json()
        assert props["total_slots"] == 3
        assert props["n_ctx"] == 512  # each slot's whole context
    finally:
        stop(proc)


def test_serve_refuses_zero_answers_in_words():
    done = subprocess.run(
        [sys.executable, "-m", "layerlab.cli.main", "serve", "--parallel", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "--parallel must be 1 or more" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_the_answers_at_once_control(qtbot):
    controls = PlanControls()
    qtbot.addWidget(controls)
    seen: list[int] = []
    controls.parallelChanged.connect(seen.append)
    controls.parallel.setValue(3)
    assert seen == [3]
    controls.show_values("fastest", 2048, "f16", parallel=2)  # showing a plan says nothing
    assert controls.parallel.value() == 2 and seen == [3]
