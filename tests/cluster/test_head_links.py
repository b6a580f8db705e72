"""The head's side of the link on loopback: a plan names the paired worker as the person
knows it, the supervisor routes it through the forwarder, and the heartbeat reports a
killed worker before llama.cpp's abort is even diagnosed."""

from __future__ import annotations

import time

import pytest

from layerlab.core.cluster.head_links import HeadLinks, tcp_rtt_ms
from layerlab.core.engine.client import Delta, EngineUnavailable
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready, WatchSettings
from layerlab.core.load_plan import DeviceRef, LoadPlan
from tests.spine.engine_helpers import answer

pytestmark = pytest.mark.slow
LONG = [{"role": "user", "content": "Write a very long story about a lighthouse keeper."}]


@pytest.fixture
def links(tmp_path):
    made = HeadLinks(tmp_path / "head", name="desk", watch_retry_s=0.3)
    yield made
    made.close_all()


def _supervisor(links: HeadLinks) -> EngineSupervisor:
    sup = EngineSupervisor(watch=WatchSettings(interval_s=0.5))
    links.attach(sup)
    return sup


def _plan(demo_model, workers: list[str], split: list[float] = ()) -> LoadPlan:
    return LoadPlan(
        str(demo_model),
        n_ctx=1024,
        n_threads=1,
        devices=[DeviceRef.rpc(w) for w in workers],
        tensor_split=list(split),
    )


def test_nothing_is_written_until_needed(tmp_path):
    links = HeadLinks(tmp_path / "head")
    assert links.paired() == [] and links.peer_for("bench-box") is None
    assert links.engine_endpoint("10.0.0.5:50052") == "10.0.0.5:50052"
    assert not (tmp_path / "head").exists()


def test_a_paired_worker_by_its_address_loads_and_answers_like_local(
    links, start_sharing, demo_model
):
    w = start_sharing("bench-box")
    peer = links.pair(w.address, w.code, w.fingerprint)
    assert peer.address == w.address
    assert links.peer_for("bench-box") == links.peer_for(w.address) == peer
    assert links.address_of("bench-box") == w.address

    result = links.probe(w.address)
    assert result.ok, result.problem
    assert str(result.endpoint) == w.address and result.devices
    assert result.rtt_ms is not None and result.rtt_ms < 50

    sup = _supervisor(links)
    try:
        sup.start(_plan(demo_model, []))
        assert isinstance(sup.wait_for((Ready, Failed), 90), Ready)
        local, _ = answer(sup.client())

        sup.start(_plan(demo_model, [w.address]))
        ready = sup.wait_for((Ready, Failed), 90)
        assert isinstance(ready, Ready), ready
        # The person's address everywhere; only the engine saw the forwarder.
        assert ready.plan.workers == [w.address]
        assert f"RPC {w.address}: layers 0-29 + output" in ready.placement_text
        assert all(a.device in ("CPU", f"RPC {w.address}") for a in ready.placement.allocations)
        linked, _ = answer(sup.client())
        assert linked == local
        info = links.info(w.address)
        assert info.state == "ok" and info.rtt_ms is not None
        # The load pushed the weights through the link: its throughput is now known.
        assert info.throughput_bps and info.throughput_bps > 1e6, info
        print(f"\nlink to bench-box: {info.summary}")
    finally:
        sup.stop(quiet=True)
    # The forwarder outlives the engine.
    assert links.probe(w.address).ok


def test_killed_worker_is_reported_within_2s_through_the_heartbeat(
    links, start_sharing, demo_model
):
    w = start_sharing("bench-box")
    links.pair(w.address, w.code)
    links.open(w.address)
    sup = _supervisor(links)
    states: list[tuple[float, object]] = []
    sup._on_state = lambda s: states.append((time.monotonic(), s))
    try:
        sup.start(_plan(demo_model, [w.address], [1]))
        assert isinstance(sup.wait_for((Ready, Failed), 90), Ready)
        n, t_kill = 0, None
        with pytest.raises(EngineUnavailable):
            for ev in sup.client().stream_chat(LONG, max_tokens=2000, temperature=0):
                if isinstance(ev, Delta):
                    n += 1
                    if n == 5:
                        w.kill()
                        t_kill = time.monotonic()
        state = sup.wait_for((Failed,), 10)
        t_failed = next(t for t, s in states if isinstance(s, Failed))
        took = t_failed - t_kill
        print(f"\nkill -9 of a linked worker reported after {took * 1000:.0f} ms: {state.message}")
        assert took < 2.0
        assert state.lost_workers == [w.address]
        assert "bench-box" in state.message and w.address in state.message
        assert links.info(w.address).state == "lost"
        sup.reload_without_lost()
        ready = sup.wait_for((Ready, Failed), 90)
        assert isinstance(ready, Ready) and ready.plan.workers == []
    finally:
        sup.stop(quiet=True)


def test_a_refused_link_is_explained_in_its_own_words(links, start_sharing, demo_model, make_head):
    w = start_sharing("bench-box")
    links.pair(w.address, w.code)
    # Another head takes the worker: ours is told whom it serves, not "not a worker".
    other, other_trust = make_head("laptop")
    from layerlab.core.cluster import link

    other_peer = link.pair(other, other_trust, w.address, w.code)
    busy, _ = link.open_link(other, other_peer, "rpc")
    try:
        sup = _supervisor(links)
        sup.start(_plan(demo_model, [w.address]))
        failed = sup.wait_for((Failed, Ready), 30)
        assert isinstance(failed, Failed) and failed.lost_workers == [w.address]
        assert "busy, serving laptop" in failed.message, failed.message
    finally:
        busy.close()


def test_tcp_rtt_reads_the_kernel_estimate():
    import socket

    srv = socket.create_server(("127.0.0.1", 0))
    c = socket.create_connection(srv.getsockname())
    s, _ = srv.accept()
    c.sendall(b"x")
    s.recv(1)
    s.sendall(b"y")
    c.recv(1)
    rtt = tcp_rtt_ms(c)
    for x in (c, s, srv):
        x.close()
    assert rtt is not None and 0 <= rtt < 10
