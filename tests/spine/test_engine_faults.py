"""The engine itself goes wrong (killed, frozen, a launch overtaken by another): the
supervisor says so in words, with a cause the head can act on, and never serves a stale key."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import psutil
import pytest

from layerlab.core.engine.client import Delta, EngineUnavailable
from layerlab.core.engine.supervisor import (
    EngineSupervisor,
    Failed,
    Ready,
    WatchSettings,
    stall_limit,
)
from layerlab.core.load_plan import DeviceRef, LoadPlan
from tests.spine.engine_helpers import answer, load

LONG = [{"role": "user", "content": "Write a very long story about a lighthouse keeper."}]


def _launches() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "engine-launch")


def test_a_stale_launch_probing_a_slow_worker_leaves_the_new_engine_its_key(
    demo_model, start_worker
):
    slow = start_worker()
    sup = EngineSupervisor(watch=WatchSettings(probe_timeout_s=30))
    try:
        slow.freeze()  # the first launch's probe waits on it
        sup.start(LoadPlan(str(demo_model), n_ctx=512, devices=[DeviceRef.rpc(slow.endpoint)]))
        time.sleep(0.3)
        sup.start(LoadPlan(str(demo_model), n_ctx=512))  # the person changed their mind
        state = sup.wait_for((Ready, Failed), 60)
        assert isinstance(state, Ready), state
        slow.thaw()  # the stale launch's probe now succeeds, long after it was overtaken
        deadline = time.monotonic() + 20
        while _launches() > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _launches() == 1, "the stale launch never stood down"
        assert sup.client().status()["state"] == "idle"  # not 401
        assert answer(sup.client(), max_tokens=3)[0]
    finally:
        slow.thaw()
        sup.stop()


SCRAPS = ("llama_", "ggml", "|", "Traceback", "load_tensors")  # bits of llama.cpp's log


def _engine_pid(sup: EngineSupervisor) -> int:
    proc = sup._proc
    assert proc is not None
    return proc.pid


def test_an_engine_killed_by_signal_9_is_said_in_words(demo_model):
    sup, _ = load(LoadPlan(str(demo_model), n_ctx=512))
    try:
        os.kill(_engine_pid(sup), signal.SIGKILL)
        state = sup.wait_for((Failed,), 10)
        assert state.cause == "engine_died" and not state.lost_workers
        assert "stopped unexpectedly (killed by signal 9: perhaps the system ran out of memory" in (
            state.message
        )
        assert not any(s in state.message for s in SCRAPS), state.message
    finally:
        sup.stop()


def _freeze_is_caught(sup: EngineSupervisor, pid: int, t_freeze: float) -> Failed:
    try:
        state = sup.wait_for((Failed,), 15)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    took = time.monotonic() - t_freeze
    assert took < 10.0, f"the frozen engine was noticed after {took:.1f} s"
    assert state.cause == "engine_frozen" and not state.lost_workers
    assert "stopped answering" in state.message
    assert not any(s in state.message for s in SCRAPS), state.message
    return state


def test_an_engine_frozen_while_idle_is_noticed_and_ended(demo_model):
    sup, _ = load(LoadPlan(str(demo_model), n_ctx=512))
    pid = _engine_pid(sup)
    try:
        os.kill(pid, signal.SIGSTOP)
        _freeze_is_caught(sup, pid, time.monotonic())
        deadline = time.monotonic() + 5
        while psutil.pid_exists(pid) and time.monotonic() < deadline:
            with contextlib.suppress(psutil.Error):
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    break
            time.sleep(0.05)
        else:
            assert not psutil.pid_exists(pid), "the frozen engine was left running"
    finally:
        sup.stop()


def test_an_engine_frozen_mid_answer_ends_the_answer_and_is_reported(demo_model):
    sup, _ = load(LoadPlan(str(demo_model), n_ctx=1024))
    pid = _engine_pid(sup)
    client = sup.client()
    t_freeze = None
    try:
        n = 0
        with pytest.raises(EngineUnavailable):
            for ev in client.stream_chat(LONG, max_tokens=2000, temperature=0):
                if isinstance(ev, Delta):
                    n += 1
                    if n == 5:
                        os.kill(pid, signal.SIGSTOP)
                        t_freeze = time.monotonic()
        assert t_freeze is not None
        _freeze_is_caught(sup, pid, t_freeze)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        sup.stop()


def test_a_model_that_cannot_load_says_llamas_own_reason_in_words(demo_model, tmp_path):
    # A whole, well-formed file of an architecture this llama.cpp does not know (a newer
    # model than the build): only llama.cpp can tell, and its exception says only
    # "Failed to load model from file: PATH".
    data = bytearray(demo_model.read_bytes())
    key = data.index(b"general.architecture")
    at = data.index(b"llama", key + len(b"general.architecture"))
    data[at : at + 5] = b"llamx"
    data = data.replace(b"llama.", b"llamx.")  # its keys ("llama.block_count") follow suit
    odd = tmp_path / "new-architecture.gguf"
    odd.write_bytes(bytes(data))
    sup = EngineSupervisor()
    try:
        sup.start(LoadPlan(str(odd), n_ctx=512))
        state = sup.wait_for((Ready, Failed), 60)
        assert isinstance(state, Failed) and state.cause == "load_failed", state
        assert "does not know the model's architecture" in state.message
        assert "llamx" in state.message  # llama.cpp's own reason, from its log
        assert "Failed to load model from file" not in state.message
    finally:
        sup.stop()


def test_the_engine_log_is_rotated_not_grown(demo_model, tmp_path, monkeypatch):
    from layerlab.core.engine import supervisor

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    log_dir = supervisor.engine_log_dir()
    assert str(log_dir).startswith(str(tmp_path))
    log_dir.mkdir(parents=True)
    big = 5 * 1024 * 1024 + 1  # what earlier engines left
    (log_dir / "engine.log").write_bytes(b"x" * big)
    (log_dir / "engine.log.1").write_bytes(b"y" * big)
    (log_dir / "engine.log.2").write_bytes(b"z" * big)
    sup, _ = load(LoadPlan(str(demo_model), n_ctx=512))
    sup.stop()
    time.sleep(0.3)  # the log pump closes its file after the engine's stderr ends
    files = sorted(p.name for p in log_dir.iterdir())
    assert files == ["engine.log", "engine.log.1", "engine.log.2"], files
    assert (log_dir / "engine.log").stat().st_size < big  # this run's lines, a fresh file
    assert b"llama" in (log_dir / "engine.log").read_bytes()
    assert (log_dir / "engine.log.1").read_bytes()[:1] == b"x"  # the oldest one went


def test_a_log_written_past_its_limit_keeps_at_most_three_files(tmp_path):
    from layerlab.core.engine.supervisor import RotatingLog

    log = RotatingLog(tmp_path / "engine.log", max_bytes=1000, files=3)
    for i in range(500):
        log.write(f"line {i:04d} of llama.cpp's chatter\n")
    log.close()
    files = sorted(tmp_path.iterdir())
    assert [p.name for p in files] == ["engine.log", "engine.log.1", "engine.log.2"]
    assert all(p.stat().st_size <= 1000 for p in files)
    assert (tmp_path / "engine.log").read_text().endswith("line 0499 of llama.cpp's chatter\n")


def test_the_first_decode_after_a_load_may_take_longer_than_a_token(demo_model):
    # A real engine says whether a decode has finished since its load; the watchdog gives
    # the first one (kernels being built: ~30 s on Mesa's CPU Vulkan) first_stall_s.
    watch = WatchSettings(stall_s=30.0, first_stall_s=300.0)
    assert stall_limit({"warm": False}, watch) == 300.0
    assert stall_limit({"warm": True}, watch) == 30.0
    assert stall_limit({}, watch) == 30.0  # an engine that does not say: as before
    sup = EngineSupervisor()
    sup.start(LoadPlan(str(demo_model), n_ctx=256))
    ready = sup.wait_for((Ready, Failed), 90)
    assert isinstance(ready, Ready), ready
    try:
        client = sup.client()
        assert client.status()["warm"] is False
        assert "".join(
            e.text for e in client.stream_completion("Hi", max_tokens=2) if hasattr(e, "text")
        )
        assert client.status()["warm"] is True
    finally:
        sup.stop()
