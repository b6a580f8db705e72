"""`layerlab models ...` and `layerlab serve REPO:QUANT` as a person runs them, against the
stand-in (HF_ENDPOINT), every folder in tmp."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.hub.conftest import REPO

ROOT = Path(__file__).parents[2]


def _env(standin, tmp_path) -> dict:
    env = dict(os.environ)
    env.update(
        HF_ENDPOINT=standin.endpoint,
        HF_HOME=str(tmp_path / "hf"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
    )
    env.pop("HF_TOKEN", None)
    env.pop("HF_HUB_OFFLINE", None)
    return env


def _run(env, *args, input_text=None):
    return subprocess.run(
        [sys.executable, "-m", "layerlab.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        input=input_text,
    )


def test_search_files_pull_ls_rm(standin, tmp_path):
    env = _env(standin, tmp_path)
    r = _run(env, "models", "search", "tiny")
    assert r.returncode == 0, r.stderr
    assert REPO in r.stdout and "1,200" in r.stdout and "gated" in r.stdout
    r = _run(env, "models", "files", REPO, "--fit")
    assert r.returncode == 0, r.stderr
    assert "Q4_K_M" in r.stdout and "(2 parts)" in r.stdout
    assert "fits" in r.stdout and "recommended" in r.stdout
    r = _run(env, "models", "pull", f"{REPO}:q4_0")
    assert r.returncode == 0, r.stderr
    assert "Verified and saved" in r.stdout
    r = _run(env, "models", "ls")
    assert f"{REPO} · Q4_0" in r.stdout and "llama" in r.stdout
    r = _run(env, "models", "rm", f"{REPO}:Q4_0", input_text="n\n")
    assert r.returncode == 1 and "Kept." in r.stdout
    r = _run(env, "models", "rm", f"{REPO}:Q4_0", "--yes")
    assert r.returncode == 0 and "freed" in r.stdout
    assert "No models on disk" in _run(env, "models", "ls").stdout


def test_faults_are_one_line_of_words(standin, tmp_path):
    env = _env(standin, tmp_path)
    for args, words in [
        (("files", "tester/No-GGUF-Here"), "holds no GGUF"),
        (("pull", "tester/Gated-Tiny-GGUF"), "gated or private"),
        (("pull", f"{REPO}:Q2_K"), "has no Q2_K quant"),
    ]:
        r = _run(env, "models", *args)
        assert r.returncode == 2
        assert words in r.stderr and "Traceback" not in r.stderr
    env["HF_HUB_OFFLINE"] = "1"
    r = _run(env, "models", "search", "tiny")
    assert r.returncode == 2 and "offline" in r.stderr


def test_serve_takes_a_repo_and_pulls_it_first(standin, tmp_path):
    env = _env(standin, tmp_path)
    r = _run(env, "serve", "tester/Gated-Tiny-GGUF:Q4_0", "--port", "1")
    assert r.returncode == 2
    assert "gated or private" in r.stderr and "Traceback" not in r.stderr
    assert any("/resolve/" in p for _, p in standin.requests) or any(
        "Gated" in p for _, p in standin.requests
    )


def test_serve_pulls_a_repo_then_loads_it_and_answers(standin, tmp_path):
    """A real `layerlab serve owner/repo:quant`: the file comes from the stand-in, is
    checked, enters the cache, and the engine loads it and answers a chat request."""
    import time

    import httpx

    from layerlab.core.demo_model import DEMO_FILE, demo_model_path
    from tests.conftest import free_port_pair

    repo = tmp_path / "smol"
    repo.mkdir()
    (repo / DEMO_FILE).symlink_to(demo_model_path())
    standin.add_repo("tester/SmolLM2-135M-GGUF", repo)
    env = _env(standin, tmp_path)
    port = free_port_pair()
    cmd = ["serve", "tester/SmolLM2-135M-GGUF:q4_1", "--port", str(port), "--ctx", "1024"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "layerlab.cli.main", *cmd, "--api-key", "k"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": "Bearer k"}
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "serve did not come up"
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        r = httpx.post(
            base + "/v1/chat/completions",
            headers=auth,
            timeout=60,
            json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
        )
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    gets = [p for m, p in standin.requests if m == "GET" and p.endswith(DEMO_FILE)]
    assert gets, "the model did not come from the hub"
    cached = list((tmp_path / "hf" / "hub").rglob(DEMO_FILE))
    assert cached and cached[0].resolve().stat().st_size == demo_model_path().stat().st_size
    assert DEMO_FILE in out and "Traceback" not in out
