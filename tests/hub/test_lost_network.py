"""A network lost for longer than the retries: the download waits for it, checks now and then
whether the hub answers, and goes on from the partial file's last byte by itself."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from layerlab.core.hub.downloads import NetworkWait
from layerlab.core.hub.hub import ModelHub
from layerlab.core.hub.quants import pick
from tests.hub.conftest import REPO, rig_cluster

WAITING = "Waiting for the network… it goes on by itself when"


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _until(cond, timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def _resolves(standin, since: int = 0) -> list[tuple[str, str]]:
    return [(m, p) for m, p in standin.requests[since:] if "/resolve/" in p]


def test_a_lost_network_is_waited_for_and_the_download_goes_on_by_itself(hub, standin, models):
    standin.repos[REPO].rate = 2_000_000
    dl = hub.downloads
    states: list[str] = []
    dl.subscribe(lambda i: states.append(i.state))
    item = hub.pull(f"{REPO}:F16")
    _until(lambda: dl.get(item.id).done_bytes > 1_000_000)
    standin.refuse_connections()  # mid-file: the transfer is cut, nothing answers any more
    _until(lambda: dl.get(item.id).state == "waiting_for_network")
    assert "waiting" in states  # the retries' backoff came first
    assert dl.get(item.id).note.startswith(WAITING)
    assert dl.get(item.id).note.endswith(f"{hub.config.host} answers again.")
    kept = dl.partial_path(REPO, item.files[0]).stat().st_size
    assert kept > 1_000_000
    time.sleep(1.0)  # a few checks at the test's intervals: it keeps waiting, it never fails
    assert dl.get(item.id).state == "waiting_for_network"
    standin.repos[REPO].rate = 0
    back = len(standin.requests)
    standin.answer_again()
    done = dl.wait(item.id, 30)  # nobody presses Resume
    assert done.state == "done", done.note
    assert _sha(done.path) == _sha(models["tiny"] / "Tiny-F16.gguf")
    # the check is one HEAD; the transfer then asks for the exact byte it stopped at
    assert _resolves(standin, back)[0][0] == "HEAD"
    assert [r for f, r in standin.ranges if f == "Tiny-F16.gguf"][-1] == f"bytes={kept}-"
    assert "failed" not in states


def test_waiting_for_the_network_can_be_paused(hub, standin, models):
    quants = hub.quants(REPO)
    standin.refuse_connections()
    dl = hub.downloads
    item = hub.download(REPO, pick(quants, "Q4_0"))
    _until(lambda: dl.get(item.id).state == "waiting_for_network")
    dl.pause(item.id)
    back = len(standin.requests)
    standin.answer_again()
    time.sleep(1.0)  # past the checks' interval: a paused download asks nobody
    assert dl.get(item.id).state == "paused"
    assert _resolves(standin, back) == []
    dl.resume(item.id)
    done = dl.wait(item.id, 30)
    assert done.state == "done"
    assert _sha(done.path) == _sha(models["tiny"] / "Tiny-Q4_0.gguf")


def test_waiting_for_the_network_can_be_cancelled(hub, standin):
    standin.repos[REPO].rate = 2_000_000
    dl = hub.downloads
    item = hub.pull(f"{REPO}:F16")
    _until(lambda: dl.get(item.id).done_bytes > 500_000)
    dl.pause(item.id)  # some bytes kept, then the network goes
    partial = dl.partial_path(REPO, item.files[0])
    assert partial.stat().st_size > 0
    standin.refuse_connections()
    dl.resume(item.id)
    _until(lambda: dl.get(item.id).state == "waiting_for_network")
    dl.cancel(item.id)
    assert dl.get(item.id).state == "cancelled"
    assert not partial.exists()
    back = len(standin.requests)
    standin.answer_again()
    time.sleep(0.8)
    assert dl.get(item.id).state == "cancelled" and _resolves(standin, back) == []


def test_a_real_error_when_the_hub_is_back_still_fails_in_words(hub, standin):
    quants = hub.quants(REPO)
    standin.refuse_connections()
    item = hub.download(REPO, pick(quants, "Q4_0"))
    _until(lambda: hub.downloads.get(item.id).state == "waiting_for_network")
    standin.repos[REPO].fail_next["Tiny-Q4_0.gguf"] = [404] * 10  # gone while we were away
    standin.answer_again()
    done = hub.downloads.wait(item.id, 30)
    assert done.state == "failed" and done.problem.kind == "not_found"
    assert "no longer in the repository" in done.note


def test_a_hub_that_answers_but_never_lets_the_file_through_fails_in_the_end(
    config, standin, models
):
    """The check answers but every transfer breaks before a byte: a proxy or firewall in
    between. It must not wait forever: after a few comebacks without progress it fails."""
    standin.repos[REPO].reset_after["Tiny-Q4_0.gguf"] = 0
    hub = ModelHub(
        config,
        cluster=rig_cluster,
        retry_delays_s=(0.05,),
        network_wait=NetworkWait(first_s=0.05, max_s=0.05, timeout_s=1.0),
    )
    try:
        states: list[str] = []
        hub.downloads.subscribe(lambda i: states.append(i.state))
        item = hub.pull(f"{REPO}:Q4_0")
        done = hub.downloads.wait(item.id, 60)
        assert done.state == "failed" and done.problem.kind == "dropped"
        assert "does not come through" in done.note and "Retry continues" in done.note
        assert states.count("waiting_for_network") >= 3
        # and once the line lets it through, Retry brings it in
        standin.repos[REPO].reset_after.clear()
        hub.downloads.retry(item.id)
        done = hub.downloads.wait(item.id, 30)
        assert done.state == "done"
        assert _sha(done.path) == _sha(models["tiny"] / "Tiny-Q4_0.gguf")
    finally:
        hub.close()


def test_no_check_goes_out_while_the_offline_switch_is_on(hub, standin, models):
    quants = hub.quants(REPO)
    standin.refuse_connections()
    dl = hub.downloads
    item = hub.download(REPO, pick(quants, "Q4_0"))
    _until(lambda: dl.get(item.id).state == "waiting_for_network")
    hub.set_offline(True)
    _until(lambda: "offline switch is on" in dl.get(item.id).note)
    back = len(standin.requests)
    standin.answer_again()
    time.sleep(1.0)  # past the checks' interval: offline, nobody is asked
    assert dl.get(item.id).state == "waiting_for_network"
    assert _resolves(standin, back) == []
    hub.set_offline(False)  # and it goes on by itself once the switch is off
    done = dl.wait(item.id, 30)
    assert done.state == "done"
    assert _sha(done.path) == _sha(models["tiny"] / "Tiny-Q4_0.gguf")
