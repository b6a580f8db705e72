from __future__ import annotations

import pytest

from layerlab.core.endpoint import BadAddress, Endpoint
from layerlab.core.load_plan import DeviceRef, LoadPlan, describe_ranges, expected_layer_devices


@pytest.mark.parametrize(
    "text, host, port",
    [
        ("127.0.0.1:50052", "127.0.0.1", 50052),
        ("bench-box", "bench-box", 50052),
        ("[::1]:6000", "::1", 6000),
        (" 192.168.1.20:50060 ", "192.168.1.20", 50060),
    ],
)
def test_endpoint_parses(text, host, port):
    ep = Endpoint.parse(text)
    assert (ep.host, ep.port) == (host, port)


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "empty"),
        ("http://box:50052", "web address"),
        ("box:5o052", "not a number"),
        ("box:70000", "outside 1-65535"),
        ("bad_host!:50052", "not a valid host name"),
        ("[::1:50052", "closing"),
    ],
)
def test_endpoint_typos_get_clear_words(text, words):
    with pytest.raises(BadAddress, match=words):
        Endpoint.parse(text)


def test_plan_round_trips_and_drops_a_worker():
    plan = LoadPlan(
        "/m.gguf", devices=[DeviceRef.rpc("a:1"), DeviceRef.rpc("b:2")], tensor_split=[1, 2]
    )
    again = LoadPlan.from_json(plan.to_json())
    assert again == plan
    without = plan.without_worker("a:1")
    assert without.devices == [DeviceRef.rpc("b:2")] and without.tensor_split == [2.0]
    assert plan.workers == ["a:1", "b:2"]


def test_expected_layers_follow_llamacpp_rule():
    plan = LoadPlan(
        "/m", devices=[DeviceRef.rpc("a:1"), DeviceRef.rpc("b:2")], tensor_split=[10, 21]
    )
    layers = expected_layer_devices(plan, 30)
    assert layers[:10] == ["RPC a:1"] * 10 and layers[10:] == ["RPC b:2"] * 21
    assert describe_ranges(layers) == "RPC a:1: layers 0-9 · RPC b:2: layers 10-29 + output"
    cpu = expected_layer_devices(LoadPlan("/m"), 30)
    assert describe_ranges(cpu) == "CPU: layers 0-29 + output"


def test_plan_validation_names_the_problem():
    with pytest.raises(ValueError, match="2 shares for 1 devices"):
        LoadPlan("/m", devices=[DeviceRef.rpc("a:1")], tensor_split=[1, 2]).validate()


def test_short_times_read_honestly():
    from layerlab.core.units import format_ms

    assert format_ms(0.04) == "<0.1 ms" and format_ms(1.46) == "1.5 ms"
