"""The same greedy answer, whether the layers run here, on one worker, or split over two."""

from __future__ import annotations

from layerlab.core.load_plan import DeviceRef, LoadPlan, describe_ranges, expected_layer_devices
from tests.spine.engine_helpers import answer, load

N_LAYER = 30  # SmolLM2-135M


def run(plan: LoadPlan) -> tuple[str, list[str], dict]:
    sup, ready = load(plan)
    try:
        text, done = answer(sup.client())
        return text, ready.placement.layer_devices, done.usage
    finally:
        sup.stop()


def test_greedy_output_identical_local_one_worker_two_workers(demo_model, start_worker):
    w1, w2 = start_worker(), start_worker()
    local = LoadPlan(str(demo_model), n_ctx=1024, n_threads=2)
    one = LoadPlan(str(demo_model), n_ctx=1024, devices=[DeviceRef.rpc(w1.endpoint)])
    two = LoadPlan(
        str(demo_model),
        n_ctx=1024,
        devices=[DeviceRef.rpc(w1.endpoint), DeviceRef.rpc(w2.endpoint)],
        tensor_split=[10, 21],
    )

    text_local, layers_local, usage = run(local)
    assert usage["completion_tokens"] == 64 and len(text_local) > 40
    assert layers_local == ["CPU"] * (N_LAYER + 1)

    w1.wait_idle()
    text_one, layers_one, _ = run(one)
    assert layers_one == [f"RPC {w1.endpoint}"] * (N_LAYER + 1)

    w1.wait_idle()
    text_two, layers_two, _ = run(two)
    assert layers_two == expected_layer_devices(two, N_LAYER)
    assert describe_ranges(layers_two) == (
        f"RPC {w1.endpoint}: layers 0-9 · RPC {w2.endpoint}: layers 10-29 + output"
    )
    assert text_one == text_local
    assert text_two == text_local


def test_cpu_keeps_first_blocks_when_not_all_offloaded(demo_model, worker):
    plan = LoadPlan(
        str(demo_model), n_ctx=512, devices=[DeviceRef.rpc(worker.endpoint)], n_gpu_layers=21
    )
    sup, ready = load(plan)
    try:
        assert ready.placement.layer_devices == expected_layer_devices(plan, N_LAYER)
        assert ready.placement.layer_devices[:10] == ["CPU"] * 10
        by_dev = {a.device: a for a in ready.placement.allocations}
        # llama.cpp's own buffer sizes are reported per device: the worker holds the KV cache
        # of 20 blocks, the CPU that of 10.
        remote = by_dev[f"RPC {worker.endpoint}"]
        assert remote.weights > 0 and remote.compute > 0
        assert remote.kv_cache == 2 * by_dev["CPU"].kv_cache
    finally:
        sup.stop()
