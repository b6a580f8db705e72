"""llama.cpp's device list comes from a short-lived child; the GUI process never loads it."""

from __future__ import annotations

import subprocess
import sys

from layerlab.core.devices.ggml_view import read_llama_devices

GUI_SIDE = """
import sys
import layerlab.ui.devices.panel  # what the window imports
from layerlab.core.devices.ggml_view import read_llama_devices
from layerlab.core.devices.inventory import discover, local_probes
view = read_llama_devices()
inv = discover(local_probes(), view)
assert view.problem == "", view.problem
assert any(d["type"] == "cpu" for d in view.devices), view.devices
assert inv.llama_names["CPU"] == "host", inv.llama_names
assert "llama_cpp" not in sys.modules, "the GUI process loaded llama.cpp"
print("ok")
"""


def test_child_lists_devices_and_gui_process_stays_clean():
    out = subprocess.run(
        [sys.executable, "-c", GUI_SIDE],
        capture_output=True,
        text=True,
        timeout=60,
        env={"QT_QPA_PLATFORM": "offscreen", **__import__("os").environ},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_a_hanging_child_is_a_problem_not_a_hang(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    view = read_llama_devices(timeout=0.5, python=str(fake))
    assert view.devices == [] and "did not list its devices within 0.5 s" in view.problem


def test_a_crashing_child_says_why(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'ggml_cuda_init: failed to initialize CUDA' >&2\nexit 134\n")
    fake.chmod(0o755)
    view = read_llama_devices(timeout=5, python=str(fake))
    assert "exit 134" in view.problem and "failed to initialize CUDA" in view.problem
