"""What the plan says is what loads, field for field: the engine reports the parameters
llama.cpp really runs with, and every difference is worded or refused, never silent."""

from __future__ import annotations

import httpx
import pytest

from layerlab.core.engine.loaded import compare, planned
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready
from layerlab.core.load_plan import DeviceRef, LoadPlan
from tests.spine.engine_helpers import load

FIELDS = ("n_ctx", "n_batch", "n_ubatch", "flash_attn", "type_k", "type_v", "split_mode")


def _check(plan: LoadPlan, ready: Ready) -> None:
    loaded = ready.loaded
    want = planned(plan)
    for name in FIELDS:
        assert name in loaded, f"the engine did not report {name}"
        assert loaded[name] == want[name], (name, want[name], loaded[name])
    assert loaded["devices"] == want["devices"]
    if plan.n_threads is not None:
        assert loaded["n_threads"] == plan.n_threads == loaded["n_threads_batch"]
    assert ready.notes == []


@pytest.mark.parametrize(
    "settings",
    [
        {"n_ctx": 512},
        {"n_ctx": 1024, "flash_attn": True},
        {"n_ctx": 2048, "flash_attn": True, "type_k": "q8_0", "type_v": "q8_0"},
        {"n_ctx": 768, "n_batch": 256, "n_ubatch": 128, "n_threads": 1},
    ],
    ids=["plain", "flash", "q8_0-kv-flash", "ctx-batch-threads"],
)
def test_the_engine_runs_with_what_the_plan_says(demo_model, settings):
    plan = LoadPlan(str(demo_model), **settings)
    sup, ready = load(plan)
    try:
        _check(plan, ready)
        # ...and says the same when asked over its API
        status = httpx.get(
            ready.url + "/layerlab/status", headers={"Authorization": f"Bearer {sup.token}"}
        ).json()
        assert status["loaded"] == ready.loaded
    finally:
        sup.stop()


def test_a_plan_with_a_worker_loads_onto_that_worker(demo_model, worker):
    plan = LoadPlan(
        str(demo_model), n_ctx=512, devices=[DeviceRef.rpc(worker.endpoint)], flash_attn=True
    )
    sup, ready = load(plan)
    try:
        _check(plan, ready)
        assert ready.loaded["devices"] == [f"RPC {worker.endpoint}"]
    finally:
        sup.stop()


def test_a_context_llama_cpp_rounds_up_is_said(demo_model):
    plan = LoadPlan(str(demo_model), n_ctx=1000)
    sup, ready = load(plan)
    try:
        assert ready.loaded["n_ctx"] == 1024
        assert any("1024" in n and "1000" in n for n in ready.notes), ready.notes
    finally:
        sup.stop()


def test_a_quantized_v_cache_without_flash_attention_is_refused_in_words(demo_model):
    sup = EngineSupervisor()
    try:
        sup.start(LoadPlan(str(demo_model), n_ctx=512, type_v="q8_0", flash_attn=False))
        state = sup.wait_for((Ready, Failed), 60)
        assert isinstance(state, Failed) and state.cause == "load_failed", state
        assert "flash attention" in state.message
    finally:
        sup.stop()


def test_every_difference_is_worded_or_refused():
    plan = {**planned(LoadPlan("m.gguf", n_ctx=1000, n_batch=512, flash_attn=True))}
    notes, refusals = compare(plan, {**plan, "n_ctx": 1024, "flash_attn": False})
    assert any("1024" in n for n in notes)
    assert len(refusals) == 1 and "flash attention on" in refusals[0]
    notes, refusals = compare(plan, {**plan, "n_ctx": 4096})
    assert refusals and "4096" in refusals[0]
    assert compare(plan, dict(plan)) == ([], [])
