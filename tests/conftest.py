"""Shared fixtures: the demo model, free ports, real RPC workers on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerlab.core.cluster.probe import probe
from layerlab.core.demo_model import demo_model_path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The Workers list browses the LAN for workers when shown; tests keep mDNS off the real LAN
# (discovery tests name their own interfaces: loopback or their namespaces).
os.environ.setdefault("LAYERLAB_DISCOVERY", "off")


@pytest.fixture(scope="session")
def demo_model() -> Path:
    return demo_model_path()


def free_port_pair() -> int:
    """A port p with p+1 also free (a worker serves its status on the next port)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p >= 65535:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port pair")


class ControlledProcess:
    """Faults a test can inflict on a child process, and a stop that always ends it."""

    proc: subprocess.Popen

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(5)

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def end(self) -> None:
        """Terminate (thawing first: a stopped process cannot act on SIGTERM), then kill."""
        if self.proc.poll() is None:
            self.thaw()
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class WorkerProcess(ControlledProcess):
    """A real `layerlab worker` on loopback, for tests."""

    def __init__(self, port: int, tmp: Path, threads: int = 1, cache: bool = True):
        self.port = port
        self.endpoint = f"127.0.0.1:{port}"
        cache_dir = str(tmp / f"cache-{port}") if cache else ""
        self.log = tmp / f"worker-{port}.log"
        self._log_file = open(self.log, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "layerlab.cli.main",
                "worker",
                "--listen",
                self.endpoint,
                "--threads",
                str(threads),
                "--cache-dir",
                cache_dir,
            ],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()}")
            if "ready on" in self.log.read_text():
                return
            time.sleep(0.05)
        raise RuntimeError(f"worker did not start: {self.log.read_text()}")

    def stop(self) -> None:
        self._log_file.close()
        self.end()

    def wait_idle(self, timeout: float = 10) -> None:
        """Until the worker answers a probe again (it serves one head at a time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if probe(self.endpoint, timeout=0.5).ok:
                return
        raise TimeoutError(f"worker {self.endpoint} still busy")


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator:
    started: list[WorkerProcess] = []

    def start(threads: int = 1, cache: bool = True) -> WorkerProcess:
        w = WorkerProcess(free_port_pair(), tmp_path, threads, cache)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def worker(start_worker) -> WorkerProcess:
    return start_worker()


@pytest.fixture(scope="session", autouse=True)
def no_engine_outlives_the_suite():
    """Fail the run if any test left an engine process behind (a leaked model holds memory
    and a port). Module fixtures may keep one for their tests; the session end may not."""
    yield
    import psutil

    def engines() -> list[psutil.Process]:
        found = []
        for c in psutil.Process().children(recursive=True):
            try:
                if "layerlab.core.engine.host" in " ".join(c.cmdline()):
                    found.append(c)
            except psutil.Error:
                pass
        return found

    deadline = time.monotonic() + 10  # stop() calls still winding down
    left = engines()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in left:
        p.kill()
    assert not left, f"engine processes left running by the tests: {[p.pid for p in left]}"
