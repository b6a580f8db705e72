"""`layerlab serve` as a client sees it when its engine is killed or frozen: /health says what
happened in words, requests fail fast instead of hanging, and the model comes back by itself.
(Before the head: 503 "failed" for as long as it ran after a kill; "ok" while frozen.)"""

from __future__ import annotations

import os
import signal
import time

import httpx
import psutil
import pytest

from tests.conftest import engine_pid
from tests.spine.test_serve import H, start_serve, stop

pytestmark = pytest.mark.slow


def health(base: str) -> tuple[int, dict]:
    r = httpx.get(base + "/health", timeout=5)
    return r.status_code, r.json()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_loads_again_after_its_engine_is_killed():
    proc, base = start_serve()
    try:
        first = engine_pid(proc.pid)
        os.kill(first, signal.SIGKILL)
        _, body = wait_for(
            lambda: (h := health(base))[1].get("last_incident") and h, 10, "the incident"
        )
        incident = body["last_incident"]
        assert incident["cause"] == "engine_died"
        assert "signal 9" in incident["message"] and "llama_" not in incident["message"]
        wait_for(lambda: health(base)[0] == 200, 60, "serve to be ok again")
        assert engine_pid(proc.pid) != first
        r = httpx.post(
            base + "/v1/chat/completions",
            headers=H,
            json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
            timeout=30,
        )
        assert r.status_code == 200, r.text
    finally:
        out = stop(proc)
    assert "Loading the model again in" in out and "Traceback" not in out


def test_serve_never_says_ok_for_a_frozen_engine_and_loads_again():
    proc, base = start_serve()
    frozen = engine_pid(proc.pid)
    try:
        t0 = time.monotonic()
        os.kill(frozen, signal.SIGSTOP)
        # A request sent now must not hang until the client gives up.
        with pytest.raises(httpx.HTTPError):
            httpx.post(
                base + "/v1/chat/completions",
                headers=H,
                json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
                timeout=15,
            ).raise_for_status()
        _, body = wait_for(
            lambda: (h := health(base))[0] != 200 and h, 12, "/health to stop saying ok"
        )
        assert body["status"] in ("error", "loading"), body
        assert time.monotonic() - t0 < 15
        wait_for(
            lambda: health(base)[1].get("last_incident", {}).get("cause") == "engine_frozen",
            12,
            "the frozen engine named",
        )
        wait_for(lambda: health(base)[0] == 200, 60, "serve to be ok again")
        assert engine_pid(proc.pid) != frozen
    finally:
        if psutil.pid_exists(frozen):
            os.kill(frozen, signal.SIGCONT)
        stop(proc)
