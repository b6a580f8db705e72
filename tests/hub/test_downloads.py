"""Downloads through the real huggingface_hub client from the stand-in: verified, resumable,
stoppable, and never half-written in the library."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from layerlab.core.hub.problems import HubProblem
from layerlab.core.hub.quants import pick
from tests.hub.conftest import REPO


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _until(cond, timeout_s: float = 20.0) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def _library_paths(hub) -> set[str]:
    return {m.path for m in hub.library.models()}


def test_pull_downloads_verifies_and_lists_a_split_model(hub, models):
    item = hub.pull(f"{REPO}:q4_k_m")
    done = hub.downloads.wait(item.id, 60)
    assert done.state == "done", done.note
    assert done.done_bytes == done.total
    first = Path(done.path)
    assert first.name == "Tiny-Q4_K_M-00001-of-00002.gguf"
    assert _sha(first) == _sha(models["tiny"] / first.name)
    (model,) = [m for m in hub.library.models() if m.path == str(first)]
    assert model.where == "Hugging Face cache" and len(model.parts) == 2
    assert model.name == f"{REPO} · Q4_K_M"
    facts = hub.library.facts(model)
    assert facts.architecture == "llama" and facts.n_ctx_train == 4096 and not facts.problem
    freed = hub.library.delete(model)
    assert freed == model.size
    assert _library_paths(hub) == set()


def test_a_dropped_connection_resumes_with_a_range_request(hub, standin, models):
    standin.repos[REPO].drop_after["Tiny-F16.gguf"] = 2_500_000
    item = hub.pull(f"{REPO}:F16")
    done = hub.downloads.wait(item.id, 60)
    assert done.state == "done", done.note
    assert _sha(done.path) == _sha(models["tiny"] / "Tiny-F16.gguf")
    gets = [r for f, r in standin.ranges if f == "Tiny-F16.gguf"]
    # what arrived in whole 1 MiB pieces before the drop is kept; the rest is asked for
    assert gets == ["", f"bytes={2 * 2**20}-"]


def test_a_corrupted_byte_never_enters_the_library(hub, standin):
    standin.repos[REPO].flip_byte["Tiny-Q4_0.gguf"] = 1000
    item = hub.pull(f"{REPO}:Q4_0")
    done = hub.downloads.wait(item.id, 60)
    assert done.state == "failed"
    assert done.problem.kind == "corrupt"
    assert "discarded" in done.note
    assert _library_paths(hub) == set()
    assert not list(hub.config.cache_dir.rglob("*.incomplete"))
    # the hub serves it whole again: Retry brings it in
    standin.repos[REPO].flip_byte.clear()
    hub.downloads.retry(item.id)
    assert hub.downloads.wait(item.id, 60).state == "done"


def test_429_is_waited_out_with_backoff(hub, standin):
    standin.repos[REPO].fail_next["Tiny-Q4_0.gguf"] = [429, 429]
    notes = []
    hub.downloads.subscribe(lambda i: notes.append((i.state, i.note)))
    item = hub.pull(f"{REPO}:Q4_0")
    assert hub.downloads.wait(item.id, 60).state == "done"
    waits = [n for s, n in notes if s == "waiting"]
    assert waits and "too many requests" in waits[0] and "Trying again in" in waits[0]


@pytest.mark.parametrize(("status", "kind"), [(404, "not_found"), (401, "gated"), (500, "server")])
def test_file_faults_fail_in_words(hub, standin, status, kind):
    standin.repos[REPO].fail_next["Tiny-Q4_0.gguf"] = [status] * 10
    item = hub.pull(f"{REPO}:Q4_0")
    done = hub.downloads.wait(item.id, 60)
    assert done.state == "failed" and done.problem.kind == kind
    assert "Traceback" not in done.note and "httpx" not in done.note
    assert _library_paths(hub) == set()


def test_pause_stops_the_transfer_and_resume_continues_it(hub, standin, models):
    standin.repos[REPO].rate = 2_000_000
    dl = hub.downloads
    item = hub.pull(f"{REPO}:F16")
    _until(lambda: dl.get(item.id).done_bytes > 1_000_000)
    dl.pause(item.id)
    assert dl.get(item.id).state == "paused"
    paused_at = standin.bytes_sent
    time.sleep(0.5)
    # the transfer really stopped: at most what was in flight in the socket's buffers
    assert standin.bytes_sent - paused_at < 512 * 1024
    partial = dl.partial_path(REPO, item.files[0])
    kept = partial.stat().st_size
    assert kept > 1_000_000
    standin.repos[REPO].rate = 0
    dl.resume(item.id)
    done = dl.wait(item.id, 60)
    assert done.state == "done"
    assert _sha(done.path) == _sha(models["tiny"] / "Tiny-F16.gguf")
    assert [r for f, r in standin.ranges if f == "Tiny-F16.gguf"][-1] == f"bytes={kept}-"


def test_cancel_stops_and_removes_the_partial_file(hub, standin):
    standin.repos[REPO].rate = 2_000_000
    dl = hub.downloads
    item = hub.pull(f"{REPO}:F16")
    _until(lambda: dl.get(item.id).done_bytes > 500_000)
    partial = dl.partial_path(REPO, item.files[0])
    assert partial.exists()
    dl.cancel(item.id)
    sent = standin.bytes_sent
    time.sleep(0.5)
    assert standin.bytes_sent - sent < 512 * 1024
    assert dl.get(item.id).state == "cancelled"
    assert not partial.exists()
    assert _library_paths(hub) == set()


def test_downloads_queue_one_at_a_time(hub, standin):
    standin.repos[REPO].rate = 4_000_000
    dl = hub.downloads
    a = hub.pull(f"{REPO}:Q8_0")
    b = hub.pull(f"{REPO}:Q4_0")
    _until(lambda: dl.get(a.id).state == "downloading" and dl.get(a.id).done_bytes > 0)
    assert dl.get(b.id).state == "queued"
    assert dl.wait(b.id, 60).state == "done"
    assert dl.get(a.id).state == "done"
    first_b = next(i for i, (f, _) in enumerate(standin.ranges) if f == "Tiny-Q4_0.gguf")
    last_a = max(i for i, (f, _) in enumerate(standin.ranges) if f == "Tiny-Q8_0.gguf")
    assert last_a < first_b


PULL = """
import sys, json
from pathlib import Path
from layerlab.core.hub.config import HubConfig
from layerlab.core.hub.hub import ModelHub
c = json.loads(sys.argv[1])
hub = ModelHub(HubConfig(endpoint=c["endpoint"], cache_dir=Path(c["cache"]),
    own_folder=Path(c["own"]), state_dir=Path(c["state"]), offline=False, margin_bytes=0))
item = hub.pull(c["spec"])
hub.downloads.subscribe(lambda i: print(i.done_bytes, flush=True))
hub.downloads.wait(item.id)
"""


def test_a_download_killed_mid_file_resumes_and_verifies(hub, config, standin, models):
    standin.repos[REPO].rate = 1_500_000
    args = {
        "endpoint": config.endpoint,
        "cache": str(config.cache_dir),
        "own": str(config.own_folder),
        "state": str(config.state_dir),
        "spec": f"{REPO}:F16",
    }
    app = subprocess.Popen(
        [sys.executable, "-c", PULL, json.dumps(args)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        for line in app.stdout:
            if int(line.split()[0]) > 1_000_000:
                break
        os.kill(app.pid, signal.SIGKILL)  # the app dies mid-file, its transfer with it
    finally:
        app.kill()
        app.wait(10)
        app.stdout.close()
    time.sleep(0.6)  # the orphaned transfer notices within 0.2 s
    quiet = standin.bytes_sent
    time.sleep(0.4)
    assert standin.bytes_sent == quiet, "a transfer outlived the app"
    standin.repos[REPO].rate = 0
    (restored,) = hub.downloads.items()  # the next start lists it with what it has
    assert restored.state == "paused" and restored.done_bytes > 1_000_000
    kept = restored.done_bytes
    # and continues it by itself: nobody presses Resume
    assert hub.downloads.continue_restored() == [restored]
    done = hub.downloads.wait(restored.id, 60)
    assert done.state == "done"
    assert _sha(done.path) == _sha(models["tiny"] / "Tiny-F16.gguf")
    last = [r for f, r in standin.ranges if f == "Tiny-F16.gguf"][-1]
    assert last.startswith("bytes=") and int(last[6:-1]) == kept


def test_not_enough_disk_space_is_said_before_starting(hub, standin):
    hub.config.margin_bytes = 1 << 50  # a petabyte to spare: no disk has it
    with pytest.raises(HubProblem) as e:
        hub.pull(f"{REPO}:Q4_0")
    assert e.value.kind == "disk_full"
    assert str(hub.config.cache_dir) in e.value.message and "more is needed" in e.value.message
    assert [p for m, p in standin.requests if "/resolve/" in p] == []


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small-disk"
    mount.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_mid_download_is_reported_and_leaves_nothing(hub, standin, small_disk):
    hub.config.cache_dir = small_disk / "cache"
    standin.repos[REPO].rate = 1_000_000
    item = hub.pull(f"{REPO}:Q4_0")  # 1.4 MB of the 2 MiB: it fits when it starts
    dl = hub.downloads
    _until(lambda: dl.get(item.id).done_bytes > 100_000)
    (small_disk / "filler").write_bytes(b"\0" * 1_000_000)  # then something else takes the room
    done = dl.wait(item.id, 60)
    assert done.state == "failed" and done.problem.kind == "disk_full", done.note
    assert "disk filled up" in done.note
    left = [p for p in (small_disk / "cache").rglob("*") if p.is_file() and p.stat().st_size]
    assert left == []
    assert _library_paths(hub) == set()


def test_a_gated_download_with_a_token(hub, standin):
    hub.token.set("hf_good")
    quants = hub.quants("tester/Gated-Tiny-GGUF")
    item = hub.download("tester/Gated-Tiny-GGUF", pick(quants, "Q4_0"))
    assert hub.downloads.wait(item.id, 60).state == "done"


def test_restored_downloads_stay_put_while_offline_and_a_pause_is_kept(hub, standin, models):
    standin.repos[REPO].rate = 2_000_000
    running = hub.pull(f"{REPO}:F16")
    paused = hub.pull(f"{REPO}:Q8_0")  # queued behind it; the person pauses it
    hub.downloads.pause(paused.id)
    _until(lambda: hub.downloads.get(running.id).done_bytes > 500_000)
    hub.close()  # the app quits mid-file
    hub.config.offline = True
    time.sleep(0.3)  # what was already in the socket's buffers drains
    sent = standin.bytes_sent
    by_tag = {i.tag: i for i in hub.downloads.items()}  # the next start, offline
    assert set(by_tag) == {"F16", "Q8_0"}
    assert hub.downloads.continue_restored() == []
    time.sleep(0.3)
    assert by_tag["F16"].state == "paused" and standin.bytes_sent == sent
    hub.close()
    hub.config.offline = False  # back online, the next start: the quit one continues
    standin.repos[REPO].rate = 0
    by_tag = {i.tag: i for i in hub.downloads.items()}
    (back,) = hub.downloads.continue_restored()
    assert back is by_tag["F16"]
    assert hub.downloads.wait(back.id, 60).state == "done"
    assert _sha(back.path) == _sha(models["tiny"] / "Tiny-F16.gguf")
    assert by_tag["Q8_0"].state == "paused"  # the person's pause stands
