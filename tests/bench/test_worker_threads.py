"""`layerlab worker` without --threads runs with the count a bench measured best on this
machine (else one per core), and says which in its first line."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from layerlab.core.planner.calibration import Calibration, calibration_path, device_identity
from tests.conftest import free_port_pair


def first_lines(env: dict, *args: str, timeout: float = 30) -> str:
    """What the worker prints until it is ready (or ends), then it is stopped."""
    listen = f"127.0.0.1:{free_port_pair()}"
    command = [sys.executable, "-m", "layerlab.cli.main", "worker", "--listen", listen]
    proc = subprocess.Popen(
        [*command, "--cache-dir", "", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    seen = ""
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            seen += line
            if "ready on" in line or not line:
                break
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert "ready on" in seen, seen
    return seen


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A data folder of this test's own, for the worker and for what the test records."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return dict(os.environ)


def test_the_worker_runs_with_the_threads_measured_best_here(env):
    cal = Calibration(calibration_path())
    # a worker's own figure does not count: the best here is this machine's CPU's
    cal.record_device(device_identity("127.0.0.1:50052", "AMD EPYC on 127.0.0.1:50052"), 9e9, 7)
    cal.record_device(device_identity("this machine", "Host RAM (AMD EPYC)"), 9e9, threads=3)
    cal.save()
    out = first_lines(env)
    assert out.splitlines()[0] == (
        "LayerLab worker starting with 3 CPU threads "
        "(the count a bench measured best on this machine; --threads sets another)."
    )
    # the person's count wins
    assert "starting with 2 CPU threads (--threads)" in first_lines(env, "--threads", "2")


def test_without_a_measurement_the_worker_uses_one_thread_per_core(env):
    out = first_lines(env)
    n = max(1, os.cpu_count() or 1)
    assert out.splitlines()[0].startswith(f"LayerLab worker starting with {n} CPU threads (")
    assert "no bench has measured this machine yet" in out


def test_a_thread_count_below_one_is_refused_in_words(env):
    r = subprocess.run(
        [sys.executable, "-m", "layerlab.cli.main", "worker", "--threads", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 2
    assert "--threads must be 1 or more, not 0" in r.stderr and "Traceback" not in r.stderr
