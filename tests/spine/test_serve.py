"""`layerlab serve`: the API without a window, and what it does when a worker is lost."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import free_port_pair

KEY = "test-key-not-secret"


def start_serve(*args: str) -> tuple[subprocess.Popen, str]:
    port = free_port_pair()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "layerlab.cli.main",
            "serve",
            "--port",
            str(port),
            "--ctx",
            "2048",
            "--api-key",
            KEY,
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health").status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError(proc.stdout.read())


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    return out


H = {"Authorization": f"Bearer {KEY}"}


def test_serve_demo_model_answers_with_a_key(tmp_path):
    proc, base = start_serve()
    try:
        assert httpx.get(base + "/v1/models").status_code == 401
        models = httpx.get(base + "/v1/models", headers=H).json()
        assert models["data"][0]["id"]
        r = httpx.post(
            base + "/v1/chat/completions",
            headers=H,
            timeout=60,
            json={
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 8,
                "temperature": 0,
            },
        )
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
        health = httpx.get(base + "/health").json()
        assert health["status"] == "ok" and "CPU: layers 0-29 + output" in health["placement"]
        # serve's plan has flash attention on, as the planner's and llama.cpp's own "auto"
        status = httpx.get(base + "/layerlab/status", headers=H).json()
        assert status["plan"]["flash_attn"] is True and status["loaded"]["flash_attn"] is True
    finally:
        out = stop(proc)
    assert "serving SmolLM2" in out


def test_lost_worker_is_an_api_error_and_a_health_report_not_a_dead_process(start_worker):
    w1, w2 = start_worker(), start_worker()
    proc, base = start_serve("--workers", f"{w1.endpoint},{w2.endpoint}", "--tensor-split", "1,2")
    try:
        body = {
            "messages": [{"role": "user", "content": "Write a long story."}],
            "max_tokens": 2000,
            "temperature": 0,
            "stream": True,
        }
        events = []
        with httpx.stream(
            "POST", base + "/v1/chat/completions", headers=H, json=body, timeout=60
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
                    if len(events) == 5:
                        w2.kill()
        assert events[-1] == "[DONE]"
        err = json.loads(events[-2])["error"]
        assert err["lost_workers"] == [w2.endpoint] and w2.endpoint in err["message"]
        assert proc.poll() is None
        # it reloads without the lost worker by itself and says what happened
        deadline = time.monotonic() + 60
        health = {}
        while time.monotonic() < deadline:
            health = httpx.get(base + "/health").json()
            if health["status"] == "ok":
                break
            time.sleep(0.2)
        assert health["status"] == "ok", health
        assert w2.endpoint not in health["placement"]
        assert health["last_incident"]["lost_workers"] == [w2.endpoint]
        r = httpx.post(
            base + "/v1/chat/completions",
            headers=H,
            timeout=60,
            json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
        )
        assert r.status_code == 200
    finally:
        stop(proc)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--workers", "127.0.0.1:5OO52"], "not a number"),
        (["--host", "0.0.0.0"], "API key"),
        (["/no/such/model.gguf"], "no file"),
    ],
)
def test_serve_refuses_bad_input_in_words(args, words):
    cmd = [sys.executable, "-m", "layerlab.cli.main", "serve", *args]
    if "--host" in args:
        r = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=30,
            env={**__import__("os").environ, "LAYERLAB_API_KEY": ""},
        )
    else:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and words in r.stderr
