"""Starting the app as a person does: `layerlab` under a real display-less Qt."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from layerlab.core.demo_model import DEMO_NAME
from layerlab.core.settings import Settings
from layerlab.ui.app import choose_model

pytestmark = pytest.mark.gui


def test_a_vanished_model_falls_back_to_the_demo_with_a_word(demo_model, tmp_path):
    settings = Settings(model_path=str(tmp_path / "moved-away.gguf"))
    path, name, note = choose_model(None, settings)
    assert path == demo_model and name == DEMO_NAME
    assert "not there any more" in note and "moved-away.gguf" in note


def wait_healthy(engine: psutil.Process, deadline: float) -> bool:
    """Until the engine's API answers /health (its one open route), or the deadline."""
    while time.monotonic() < deadline and engine.is_running():
        ports = [c.laddr.port for c in engine.net_connections("tcp") if c.status == "LISTEN"]
        for port in ports:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2, trust_env=False)
            except httpx.HTTPError:
                continue
            if r.status_code == 200 and r.json().get("status") == "ok":
                return True
        time.sleep(0.1)
    return False


def test_layerlab_starts_loads_and_stops_cleanly_on_sigterm(tmp_path, pytestconfig):
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_CONFIG_HOME": str(tmp_path),
        "XDG_STATE_HOME": str(tmp_path),
        "LAYERLAB_DISCOVERY": "off",
        # Qt's own messages marked, so the app is held to the suite's rule: no Qt warnings
        "QT_MESSAGE_PATTERN": "[qt %{type}] %{message}",
    }
    app = subprocess.Popen(
        [sys.executable, "-m", "layerlab.cli.main"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proc = psutil.Process(app.pid)
    deadline = time.monotonic() + 60
    engines = []
    while time.monotonic() < deadline and not engines:
        engines = [
            c
            for c in proc.children(recursive=True)
            if "layerlab.core.engine.host" in " ".join(c.cmdline())
        ]
        time.sleep(0.1)
    assert engines, "the demo model did not start loading"
    # Loaded: the engine listens only once the model is in memory, and answers /health.
    assert wait_healthy(engines[0], deadline), "the demo model did not finish loading"
    app.send_signal(signal.SIGTERM)
    out, _ = app.communicate(timeout=20)
    assert app.returncode == 0, out[-2000:]
    ignored = [re.compile(p) for p in pytestconfig.getini("qt_log_ignore")]
    warned = [
        line
        for line in out.splitlines()
        for kind in ("warning", "critical", "fatal")
        if line.startswith(f"[qt {kind}] ")
        and not any(p.search(line.removeprefix(f"[qt {kind}] ")) for p in ignored)
    ]
    assert not warned, warned
    assert not psutil.pid_exists(engines[0].pid) or engines[0].status() == psutil.STATUS_ZOMBIE
    assert (tmp_path / "layerlab" / "settings.json").exists()  # saved on the way out
