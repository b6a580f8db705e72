"""bench/gpu_check.sh is ready for the next GPU machine: its CPU path checks every step here
(`--cpu-only --dry`: tools, files, every plan and forecast, nothing loaded). The real CPU
path loads the model several times (minutes on 2 cores): opt in with
LAYERLAB_GPU_CHECK_CPU=1."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.sh"


def run(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_the_cpu_path_checks_its_steps():
    out = run("--cpu-only", "--dry", timeout=120)
    assert out.returncode == 0, out.stderr
    table = out.stdout
    assert "| in-process vs engine API | CPU |" in table
    assert "| CPU alone |" in table and "| CPU + one loopback CPU worker | RPC " in table
    assert "| forecast vs real | SmolLM2-135M Q4_1 · CPU | forecast " in table
    assert "generated 1.5B" in table
    assert "building" not in out.stderr  # --cpu-only never builds


def test_an_unknown_option_is_refused_in_words():
    out = run("--gpu", timeout=30)
    assert out.returncode == 2 and "unknown option '--gpu'" in out.stderr


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("LAYERLAB_GPU_CHECK_CPU") != "1",
    reason="the real CPU path loads the model several times; LAYERLAB_GPU_CHECK_CPU=1 runs it",
)
def test_the_real_cpu_path_prints_a_full_table():
    out = run("--cpu-only", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| in-process vs engine API | CPU | " in out.stdout
    assert "tg128" in out.stdout and "actual" in out.stdout
