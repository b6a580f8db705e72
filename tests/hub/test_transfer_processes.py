"""The transfer processes never outlive the app: the spare kept ready (and a running transfer)
end by themselves when the app is killed, on POSIX and where getppid never changes (Windows);
no spare is started while nobody will download (the offline switch)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

TRANSFER = "layerlab.core.hub.transfer"


def _transfers(of: psutil.Process) -> list[psutil.Process]:
    out = []
    for p in of.children(recursive=True):
        try:
            if TRANSFER in " ".join(p.cmdline()):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _transfers_of(pid: int, timeout_s: float = 10.0) -> list[psutil.Process]:
    """The transfer processes under `pid`, once there are any (a loaded machine is slow)."""
    end = time.monotonic() + timeout_s
    while not (found := _transfers(psutil.Process(pid))) and time.monotonic() < end:
        time.sleep(0.05)
    return found


APP = """
import sys, json, time
from pathlib import Path
from layerlab.core.hub.config import HubConfig
from layerlab.core.hub.hub import ModelHub
c = json.loads(sys.argv[1])
hub = ModelHub(HubConfig(endpoint=c["endpoint"], cache_dir=Path(c["cache"]),
    own_folder=Path(c["own"]), state_dir=Path(c["state"]), offline=False, margin_bytes=0))
hub.downloads.prepare()  # what opening a repo on the Models screen does
print("ready", flush=True)
time.sleep(120)
"""


def test_the_spare_transfer_ends_when_the_app_is_killed(config):
    args = {
        "endpoint": config.endpoint,
        "cache": str(config.cache_dir),
        "own": str(config.own_folder),
        "state": str(config.state_dir),
    }
    app = subprocess.Popen(
        [sys.executable, "-c", APP, json.dumps(args)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert app.stdout.readline().strip() == "ready"
        (spare,) = _transfers_of(app.pid)
        time.sleep(0.5)
        assert spare.is_running()  # it waits for a request while the app lives
        os.kill(app.pid, signal.SIGKILL)
        app.wait(10)
        _gone, alive = psutil.wait_procs([spare], timeout=5)
        assert alive == [], "the spare transfer outlived the app"
    finally:
        app.kill()
        app.wait(10)
        app.stdout.close()


def _transfer_watching(parent: str) -> subprocess.Popen:
    """A transfer child whose --parent is `parent`, while its real parent (this test) lives
    and its stdin stays open: only the pid watch can end it, as on Windows."""
    return subprocess.Popen(
        [sys.executable, "-m", TRANSFER, "--parent", parent],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        cwd=Path(__file__).parents[2],
    )


def test_the_parent_watch_needs_no_getppid_change():
    manager = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    started = psutil.Process(manager.pid).create_time()
    child = _transfer_watching(f"{manager.pid}:{started:.3f}")
    try:
        time.sleep(1.5)
        assert child.poll() is None  # the manager lives: the child waits for its request
        manager.kill()
        manager.wait(10)
        assert child.wait(5) == 1  # the manager died: the child ended itself
    finally:
        for p in (manager, child):
            p.kill()
            p.wait(10)
        child.stdin.close()


def test_a_reused_parent_pid_counts_as_gone():
    """Windows hands a dead process's pid to a new one soon: the start time tells them apart.
    Here the pid is alive (this test) but its start time is not the manager's."""
    started = psutil.Process().create_time()
    child = _transfer_watching(f"{os.getpid()}:{started - 3600:.3f}")
    try:
        assert child.wait(5) == 1
    finally:
        child.kill()
        child.wait(10)
        child.stdin.close()


def test_no_spare_while_offline_and_the_switch_ends_one(hub):
    me = psutil.Process()
    hub.config.offline = True
    hub.downloads.prepare()
    time.sleep(0.3)
    assert _transfers(me) == []
    hub.config.offline = False
    hub.downloads.prepare()
    (spare,) = _transfers_of(me.pid)
    hub.set_offline(True)
    _gone, alive = psutil.wait_procs([spare], timeout=5)
    assert alive == []
    hub.downloads.prepare()
    assert _transfers(me) == []
