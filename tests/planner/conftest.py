"""Real parts for the planner's tests: loopback workers, generated GGUFs, the demo model."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from layerlab.core.cluster.probe import probe
from layerlab.core.demo_model import demo_model_path
from layerlab.core.gguf.synthetic import ModelSpec, write_model


def _free_port_pair() -> int:
    """A port p with p and p+1 free (a worker serves its status on p+1)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p >= 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    raise RuntimeError("no free port pair")


def _start_worker(tmp: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port_pair()
    proc = subprocess.Popen(
        [sys.executable, "-m", "layerlab.cli.main", "worker", "--listen", f"127.0.0.1:{port}",
         "--threads", "1", "--cache-dir", ""],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    ep = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited: {proc.stdout.read()}")
        if probe(ep, timeout=0.5).ok:
            return proc, ep
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("worker did not start")


@pytest.fixture(scope="session")
def workers(tmp_path_factory):
    """Two real llama.cpp RPC workers on loopback (CPU, one thread each)."""
    started = []
    try:
        for _ in range(2):
            started.append(_start_worker(tmp_path_factory.mktemp("w")))
        yield [ep for _, ep in started]
    finally:
        for proc, _ in started:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()


@pytest.fixture(scope="session")
def demo_path() -> str:
    return str(demo_model_path())


SHAPES = {
    # name: spec (small enough to load for real in well under a second)
    "gqa4-untied": ModelSpec(n_layer=6, n_embd=256, n_head=8, n_head_kv=2, n_ff=768, n_vocab=2000),
    "mha-tied": ModelSpec(n_layer=4, n_embd=512, n_head=8, n_head_kv=8, n_ff=1024, n_vocab=1000,
                          tied=True),
    "gqa8-q8": ModelSpec(n_layer=5, n_embd=512, n_head=16, n_head_kv=2, n_ff=1024, n_vocab=3000,
                         head_dim=64),
    "moe-4x": ModelSpec(n_layer=4, n_embd=256, n_head=8, n_head_kv=4, n_ff=256, n_vocab=1000,
                        n_expert=4, n_expert_used=2),
    "gemma2-swa": ModelSpec(arch="gemma2", n_layer=6, n_embd=256, n_head=4, n_head_kv=2,
                            n_ff=512, n_vocab=1000, tied=True, sliding_window=256, head_dim=64),
}


@pytest.fixture(scope="session")
def shapes(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("shapes")
    return {k: str(write_model(d / f"{k}.gguf", spec)) for k, spec in SHAPES.items()}
