"""The house rules, checked: core runs without Qt; the window never loads llama.cpp."""

from __future__ import annotations

import subprocess
import sys

BLOCK_QT = """
import importlib.abc, sys
class NoQt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('PySide6', 'shiboken6'):
            raise ImportError('Qt is not installed (blocked by the test)')
sys.meta_path.insert(0, NoQt())
"""


def test_every_core_module_imports_without_qt():
    code = (
        BLOCK_QT
        + """
import pkgutil, importlib, layerlab.core as core
names = [m.name for m in pkgutil.walk_packages(core.__path__, 'layerlab.core.')]
for n in names:
    importlib.import_module(n)
print(len(names))
"""
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[-1]) > 20


def test_core_engine_works_without_qt(demo_model):
    """Not just imports: a whole load and answer through core with Qt blocked."""
    code = (
        BLOCK_QT
        + f"""
from layerlab.core.engine.supervisor import EngineSupervisor, Ready, Failed
from layerlab.core.load_plan import LoadPlan
sup = EngineSupervisor()
sup.start(LoadPlan({str(demo_model)!r}, n_ctx=512))
s = sup.wait_for((Ready, Failed), 60)
assert isinstance(s, Ready), s
text = ''.join(getattr(e, 'text', '') for e in sup.client().stream_chat(
    [{{'role': 'user', 'content': 'Hi'}}], max_tokens=5, temperature=0))
sup.stop()
print('ANSWER', bool(text))
"""
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ANSWER True" in r.stdout


def test_the_window_never_imports_llama_cpp(tmp_path):
    code = f"""
import os, sys
os.environ['QT_QPA_PLATFORM'] = 'offscreen'
from pathlib import Path
from PySide6.QtWidgets import QApplication
app = QApplication([])
from layerlab.core.head import Head
from layerlab.core.settings import Settings
from layerlab.ui.main_window import MainWindow
import layerlab.ui.app, layerlab.cli.main
settings_file = Path({str(tmp_path)!r}) / 's.json'
head = Head(Settings(), settings_file, state_dir=Path({str(tmp_path)!r}) / 'head')
win = MainWindow(head, Path('x.gguf'), 'x')
win.show(); app.processEvents()
# every tab once, and all the window's background work done: the model header read (it
# fails here), this machine probed, the Devices lane's inventory (llama.cpp's list, in a child)
import time
for i in range(win.tabs.count()):
    win.tabs.setCurrentIndex(i); app.processEvents()
win.tabs.setCurrentWidget(win.devices)
deadline = time.monotonic() + 30
while time.monotonic() < deadline and not (win.plan_feed.settled and not win.plan_feed.lane.busy
                                           and win.devices.gauges):
    app.processEvents(); time.sleep(0.01)
print('SETTLED', win.plan_feed.settled and bool(win.devices.gauges))
print('LLAMA', 'llama_cpp' in sys.modules)
win.close()
head.close()
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "SETTLED True" in r.stdout
    assert "LLAMA False" in r.stdout
