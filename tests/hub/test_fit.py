"""Fit badges from the remote header equal the planner's verdict on the same file locally."""

from __future__ import annotations

import pytest

from layerlab.core.gguf import check_model_file
from layerlab.core.hub.fit import badge_for, plan_on
from tests.hub.conftest import BIG, REPO, rig_cluster


@pytest.mark.parametrize("rig", ["2x3060", "no-gpu-server", "1080ti"])
def test_remote_badges_equal_the_local_plan(hub, models, standin, rig):
    cluster = rig_cluster(rig)
    for repo, folder in ((REPO, models["tiny"]), (BIG, models["big"])):
        quants = hub.quants(repo)
        badges = hub.badges(repo, quants, cluster=cluster)
        for q in quants:
            local = plan_on(check_model_file(folder / q.first), cluster.devices, cluster.n_ctx)
            assert badges[q.tag] == badge_for(local), (repo, q.tag)
    # never the file's data: a 40 GB header-only model costs a few ranged reads
    assert standin.bytes_sent < 8 * 1024 * 1024


def test_badges_say_where_it_fits(hub):
    tiny = hub.badges(REPO, hub.quants(REPO), cluster=rig_cluster("2x3060"))
    assert {b.kind for b in tiny.values()} == {"gpu"}
    assert all(b.text == "fits on GPUs" and b.generation_tps > 0 for b in tiny.values())
    (big,) = hub.badges(BIG, hub.quants(BIG), cluster=rig_cluster("2x3060")).values()
    assert big.kind in ("cpu_offload", "too_large")
    cpu = hub.badges(REPO, hub.quants(REPO), cluster=rig_cluster("no-gpu-server"))
    assert {b.text for b in cpu.values()} == {"fits on CPU (slow)"}


def test_recommended_is_the_largest_that_fits_on_gpus_else_q4_k_m(hub):
    quants = hub.quants(REPO)
    gpus = hub.badges(REPO, quants, cluster=rig_cluster("2x3060"))
    assert hub.recommended(quants, gpus).tag == "F16"
    cpu = hub.badges(REPO, quants, cluster=rig_cluster("no-gpu-server"))
    assert hub.recommended(quants, cpu).tag == "Q4_K_M"


def test_an_unreadable_header_is_a_badge_in_words(hub, standin):
    standin.repos[REPO].fail_next["Tiny-Q8_0.gguf"] = [503] * 5
    badges = hub.badges(REPO, hub.quants(REPO), cluster=rig_cluster())
    bad = badges["Q8_0"]
    assert bad.kind == "unknown" and bad.text == "cannot tell"
    assert "problem of its own (error 503)" in bad.detail
    assert badges["Q4_0"].kind == "gpu"


def test_a_paired_workers_probe_makes_the_badge_name_it(hub, models, start_worker, tmp_path):
    """A real `layerlab worker` on loopback, added to a real head: its probe answer joins the
    cluster (a recorded 2x3060 rig here), and the 70B that would spill onto this CPU fits
    with layers on the worker, named as the person sees it."""
    import time

    from layerlab.core.head import Head
    from layerlab.core.hub.hub import head_cluster

    worker = start_worker()
    head = Head(persist=False, state_dir=tmp_path / "head")
    try:
        address = head.add_worker(worker.endpoint)
        deadline = time.monotonic() + 20
        while not (head.results.get(address) and head.results[address].ok):
            assert time.monotonic() < deadline, "the worker's probe never answered"
            time.sleep(0.05)
        rig = rig_cluster("2x3060")
        cluster = head_cluster(head, here=rig.devices)
        name = head.label(address).split(" (")[0]
        assert cluster.labels == {address: name}
        (big,) = hub.badges(BIG, hub.quants(BIG), cluster=cluster).values()
        local = plan_on(
            check_model_file(models["big"] / "Llama-3-70B-Q4_K_M.gguf"),
            cluster.devices,
            cluster.n_ctx,
        )
        on_worker = sum(d.last - d.first for d in local.devices if d.device.machine == address)
        assert on_worker > 0
        assert big.kind == "split" and big.text == f"fits, {on_worker} layers on {name}"
        assert big == badge_for(local, cluster.labels) and big.generation_tps > 0
        (alone,) = hub.badges(BIG, hub.quants(BIG), cluster=rig).values()
        assert alone.kind == "cpu_offload"  # without the worker it spills onto this CPU
    finally:
        head.close()
