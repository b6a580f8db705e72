"""The first start after an install: the window shows at once, the bundled demo model's
checksum (seconds on a cold disk) is checked off the GUI thread, and the model loads once it
passes. A damaged demo is named in the window; the CLI paths check it before use."""

from __future__ import annotations

import gc
import shutil
import threading
from pathlib import Path

import pytest

from layerlab.core.demo_model import (
    DEMO_FILE,
    DEMO_PACKAGE,
    DEMO_SIZE,
    DemoModelMissing,
    demo_model_path,
    find_demo_model,
    verify_demo_model,
)
from layerlab.core.engine.supervisor import Failed, Ready, Stopped
from layerlab.core.settings import Settings
from layerlab.ui.app import DemoCheck, open_window
from layerlab.ui.memory import SETTLE_AFTER_MS

pytestmark = pytest.mark.gui


@pytest.fixture
def damaged_demo(tmp_path, monkeypatch, demo_model) -> Path:
    """A copy of the demo package, one byte of its model flipped, found first on the import
    path: where the app finds the demo model."""
    package = tmp_path / "site" / DEMO_PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    copy = package / DEMO_FILE
    shutil.copyfile(demo_model, copy)
    with copy.open("r+b") as f:
        f.seek(DEMO_SIZE // 2)
        byte = f.read(1)[0]
        f.seek(DEMO_SIZE // 2)
        f.write(bytes([byte ^ 0xFF]))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert find_demo_model() == copy and copy.stat().st_size == DEMO_SIZE
    return copy


@pytest.fixture
def windows(qtbot):
    made = []

    def make(**kwargs):
        window = open_window(Settings(welcomed=True, n_ctx=1024), **kwargs)
        qtbot.addWidget(window)
        made.append(window)
        return window

    yield make
    for window in made:
        window.findChild(DemoCheck).close()
        window.close()
        window.bridge.shutdown()


def test_the_window_shows_before_the_demo_check_ends_and_the_demo_loads_after(
    qtbot, windows, demo_model
):
    release = threading.Event()
    checked: list[Path] = []

    def cold_disk_check(path: Path) -> Path:
        release.wait(5)  # a check on the GUI thread would hold the window back this long
        checked.append(path)
        return verify_demo_model(path)

    try:
        window = windows(check_demo=cold_disk_check)
        check = window.findChild(DemoCheck)
        assert window.isVisible() and window.model_path == demo_model
        assert check.checking and not checked, "the check ran before the window showed"
        assert window.load_bar.message.text() == "Checking the demo model…"
        assert not window.load_bar.load_button.isEnabled()  # nothing loads unchecked
        qtbot.wait(300)
        assert isinstance(window.controller.state, Stopped)  # still waiting for the check
    finally:
        release.set()
    qtbot.waitUntil(lambda: not check.checking, timeout=30_000)
    assert checked == [demo_model] and not check.problem
    qtbot.waitUntil(lambda: isinstance(window.controller.state, Ready | Failed), timeout=90_000)
    assert isinstance(window.controller.state, Ready), window.controller.state
    assert window.load_bar.load_button.isEnabled()


def test_a_damaged_demo_is_named_in_the_window_and_not_loaded(qtbot, windows, damaged_demo):
    window = windows()
    assert window.isVisible() and window.model_path == damaged_demo
    check = window.findChild(DemoCheck)
    qtbot.waitUntil(lambda: not check.checking, timeout=30_000)
    said = check.problem
    assert said.startswith(f"The demo model at {damaged_demo} does not match its checksum")
    assert "Reinstall it" in said and "Traceback" not in said
    assert check.message.isVisible() and check.message.text() == said
    assert window.load_bar.message.text() == said
    qtbot.wait(300)
    assert isinstance(window.controller.state, Stopped)  # the damaged file was not loaded


def test_the_cli_and_the_self_test_check_the_demo_before_use(damaged_demo, capsys):
    from layerlab.cli.self_test import run_self_test

    with pytest.raises(DemoModelMissing, match="does not match its checksum"):
        demo_model_path()
    assert run_self_test(timeout=60) == 1
    said = capsys.readouterr().out
    assert f"The demo model at {damaged_demo} does not match its checksum" in said
    assert "Traceback" not in said


def test_what_the_start_built_is_frozen_out_of_the_collectors_walk(qtbot, windows, demo_model):
    # ui/memory.py: a full collection over the start's objects held the GIL 35-52 ms.
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        windows()
        qtbot.waitUntil(lambda: gc.get_freeze_count() > 0, timeout=SETTLE_AFTER_MS + 5_000)
    finally:
        gc.unfreeze()  # the rest of the suite collects as usual
