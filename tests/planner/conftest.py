"""Real parts for the planner's tests: loopback workers, generated GGUFs, the demo model."""

from __future__ import annotations

import pytest

from layerlab.core.demo_model import demo_model_path
from tests.conftest import WorkerProcess, free_port_pair
from tests.support.synthetic_gguf import ModelSpec, write_model


@pytest.fixture(scope="session")
def workers(tmp_path_factory):
    """Two real llama.cpp RPC workers on loopback (CPU, one thread each)."""
    started: list[WorkerProcess] = []
    try:
        for _ in range(2):
            started.append(
                WorkerProcess(
                    free_port_pair(), tmp_path_factory.mktemp("w"), threads=1, cache=False
                )
            )
        yield [w.endpoint for w in started]
    finally:
        for w in started:
            w.stop()


@pytest.fixture(scope="session")
def demo_path() -> str:
    return str(demo_model_path())


SHAPES = {
    # name: spec (small enough to load for real in well under a second)
    "gqa4-untied": ModelSpec(n_layer=6, n_embd=256, n_head=8, n_head_kv=2, n_ff=768, n_vocab=2000),
    "mha-tied": ModelSpec(
        n_layer=4, n_embd=512, n_head=8, n_head_kv=8, n_ff=1024, n_vocab=1000, tied=True
    ),
    "gqa8-q8": ModelSpec(
        n_layer=5, n_embd=512, n_head=16, n_head_kv=2, n_ff=1024, n_vocab=3000, head_dim=64
    ),
    "moe-4x": ModelSpec(
        n_layer=4,
        n_embd=256,
        n_head=8,
        n_head_kv=4,
        n_ff=256,
        n_vocab=1000,
        n_expert=4,
        n_expert_used=2,
    ),
    "gemma2-swa": ModelSpec(
        arch="gemma2",
        n_layer=6,
        n_embd=256,
        n_head=4,
        n_head_kv=2,
        n_ff=512,
        n_vocab=1000,
        tied=True,
        sliding_window=256,
        head_dim=64,
    ),
}


@pytest.fixture(scope="session")
def shapes(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("shapes")
    return {k: str(write_model(d / f"{k}.gguf", spec)) for k, spec in SHAPES.items()}
