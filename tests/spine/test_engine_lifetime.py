"""An engine never outlives the program that started it (a crashed or killed window would
otherwise leave the model's memory and a port held forever)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

HEAD = """
import sys, time
from layerlab.core.engine.supervisor import EngineSupervisor, Ready, Failed
from layerlab.core.load_plan import LoadPlan
sup = EngineSupervisor()
sup.start(LoadPlan(sys.argv[1], n_ctx=512))
s = sup.wait_for((Ready, Failed), 60)
assert isinstance(s, Ready), s
print(sup._proc.pid, flush=True)
time.sleep(600)
"""


def test_engine_ends_when_its_parent_is_killed(demo_model):
    head = subprocess.Popen(
        [sys.executable, "-c", HEAD, str(demo_model)], stdout=subprocess.PIPE, text=True
    )
    engine_pid = int(head.stdout.readline())
    assert psutil.pid_exists(engine_pid)
    os.kill(head.pid, signal.SIGKILL)
    head.wait(5)
    head.stdout.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if psutil.Process(engine_pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        psutil.Process(engine_pid).kill()
        raise AssertionError("the engine outlived its parent by 5 s")
