"""`layerlab worker` as a person runs it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

from tests.conftest import free_port_pair


def read_until(proc: subprocess.Popen, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line
        if text in line or not line:
            break
    return seen


def run_worker(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "layerlab.cli.main", "worker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_sigterm_and_ctrl_c_stop_cleanly_and_free_the_ports(tmp_path):
    for sig in (signal.SIGTERM, signal.SIGINT):
        port = free_port_pair()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "layerlab.cli.main",
                "worker",
                "--listen",
                f"127.0.0.1:{port}",
                "--cache-dir",
                str(tmp_path),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert "ready on" in read_until(proc, "ready on")
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "stopping" in out
        for p in (port, port + 1):
            with socket.socket() as s:
                s.bind(("127.0.0.1", p))  # free again


def test_a_lan_address_needs_an_explicit_flag():
    r = run_worker("--listen", "0.0.0.0:50052")
    assert r.returncode == 2 and "--allow-lan" in r.stderr


def test_a_port_in_use_is_named(worker):
    r = run_worker("--listen", worker.endpoint)
    assert r.returncode == 2 and "already using it" in r.stderr


def test_a_typo_in_the_address(tmp_path):
    r = run_worker("--listen", "127.0.0.1:5OO52")
    assert r.returncode == 2 and "not a number" in r.stderr


def test_unknown_device_lists_the_real_ones():
    r = run_worker("--listen", f"127.0.0.1:{free_port_pair()}", "--devices", "CUDA7")
    assert r.returncode == 2 and "CUDA7" in r.stderr and "CPU" in r.stderr


def test_lan_sharing_prints_a_plain_warning(tmp_path):
    port = free_port_pair()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "layerlab.cli.main",
            "worker",
            "--listen",
            f"0.0.0.0:{port}",
            "--allow-lan",
            "--cache-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        seen = read_until(proc, "ready on")
        assert "WARNING" in seen and "no password" in seen and "ready on" in seen
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
