"""The planner's KV cache for N answers against what llama.cpp allocates for them, per device,
local and split; and the default N: as many (up to 4) as fit."""

from __future__ import annotations

import pytest

from layerlab.core.gguf import read_facts
from layerlab.core.load_plan import DeviceRef, LoadPlan
from layerlab.core.planner.forecast import HOST, compare, forecast_plan
from layerlab.core.planner.memory import DeviceMemory, parallel_that_fits
from tests.support.dryrun import measure


@pytest.mark.parametrize("parallel", [1, 3])
def test_kv_and_memory_for_n_answers_match_llama_cpp(demo_model, parallel):
    plan = LoadPlan(str(demo_model), n_ctx=1024, n_gpu_layers=0, parallel=parallel)
    fc = forecast_plan(read_facts(str(demo_model)), plan)
    measured = measure(plan, no_alloc=False)
    errors = compare(fc, measured.totals())
    assert errors and all(e.ok for e in errors), errors
    one = forecast_plan(read_facts(str(demo_model)), plan.model_copy(update={"parallel": 1}))
    assert fc[HOST].kv == parallel * one[HOST].kv


def test_split_kv_grows_on_each_device_with_its_layers(demo_model, start_worker):
    w1, w2 = start_worker(), start_worker()
    base = LoadPlan(
        str(demo_model),
        n_ctx=1024,
        devices=[DeviceRef.rpc(w1.endpoint), DeviceRef.rpc(w2.endpoint)],
        tensor_split=[1, 2],
    )
    facts = read_facts(str(demo_model))
    one, four = (forecast_plan(facts, base.model_copy(update={"parallel": n})) for n in (1, 4))
    for label in (d.label for d in base.devices):
        assert four[label].kv == 4 * one[label].kv > 0
    measured = measure(base.model_copy(update={"parallel": 4}), no_alloc=False)
    errors = compare(four, measured.totals())
    assert errors and all(e.ok for e in errors), errors


def test_the_default_is_as_many_answers_as_fit():
    def forecast(n: int) -> dict[str, DeviceMemory]:
        return {"CPU": DeviceMemory(weights=100, kv=10 * n), "RPC a:1": DeviceMemory(kv=50 * n)}

    assert parallel_that_fits(forecast, {"CPU": 10_000, "RPC a:1": 10_000}) == 4
    assert parallel_that_fits(forecast, {"CPU": 10_000, "RPC a:1": 160}) == 3  # the worker
    assert parallel_that_fits(forecast, {"CPU": 125, "RPC a:1": 10_000}) == 2  # the host
    assert parallel_that_fits(forecast, {"CPU": 10, "RPC a:1": 10}) == 1  # never below one
