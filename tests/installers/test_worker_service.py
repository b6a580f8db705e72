"""`layerlab worker --install-service`: the systemd user unit it writes runs this LayerLab's
worker with the options given, and --uninstall-service takes it away."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from layerlab.cli import worker_service

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="systemd units")


def test_the_unit_runs_this_layerlab_worker_with_the_options_given(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    code, words = worker_service.install(["--share", "--name", "garage box"], start=False)
    assert code == 0 and str(worker_service.unit_path()) in words
    unit = worker_service.unit_path().read_text()
    exec_line = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    assert exec_line == (
        f'ExecStart={sys.executable} -m layerlab.cli.main worker --share --name "garage box"'
    )
    assert "Restart=on-failure" in unit and "WantedBy=default.target" in unit


@pytest.mark.skipif(shutil.which("systemctl") is None, reason="no systemctl here")
def test_install_and_uninstall_from_the_command_line(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "layerlab.cli.main", "worker"]
    done = subprocess.run(
        [*cmd, "--listen", "127.0.0.1:50099", "--install-service"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    unit = tmp_path / ".config/systemd/user/layerlab-worker.service"
    assert "worker --listen 127.0.0.1:50099\n" in unit.read_text()
    # Without a user session (a container, CI) systemd cannot start it: said, not a traceback.
    said = done.stdout + done.stderr
    assert "Traceback" not in said
    assert done.returncode == 0 or "systemctl --user enable --now" in said
    done = subprocess.run(
        [*cmd, "--uninstall-service"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0 and not unit.exists()
    assert "The worker service is removed." in done.stdout
