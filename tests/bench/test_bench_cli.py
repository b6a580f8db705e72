"""`layerlab bench` headless: the demo model by default, llama-bench's JSON on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from layerlab.core.bench.export import JSON_EXTRA_FIELDS, LLAMA_BENCH_FIELDS

pytestmark = pytest.mark.slow
ARGS = ["-p", "16", "-n", "4", "--reps", "2", "--json"]


def test_bench_the_demo_model_as_llama_bench_json(tmp_path):
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"))
    done = subprocess.run(
        [sys.executable, "-m", "layerlab.cli.main", "bench", *ARGS],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    tests = json.loads(done.stdout)
    assert [(t["n_prompt"], t["n_gen"]) for t in tests] == [(16, 0), (0, 4)]
    assert all(list(t) == [*LLAMA_BENCH_FIELDS, *JSON_EXTRA_FIELDS] for t in tests)
    assert all(len(t["samples_ts"]) == 2 and t["avg_ts"] > 0 for t in tests)
    # what it measured is kept for the next forecast
    assert (tmp_path / "data" / "layerlab" / "speed-calibration.json").exists()


def test_bench_says_a_missing_model_in_words(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "layerlab.cli.main", "bench", str(tmp_path / "nope.gguf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no such file" in done.stderr and "Traceback" not in done.stderr
