"""The suite's own guards, checked by running small suites that break them: a GUI test that
leaves a QTimer, QThread or top-level widget behind, or makes Qt warn, fails; a test that
leaves an engine running fails the run; a run that collects no tests fails run-tests.sh."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]

LEAKY_GUI_TESTS = """
import pytest
from PySide6.QtCore import QThread, QTimer, qWarning
from PySide6.QtWidgets import QLabel

pytestmark = pytest.mark.gui
kept = []  # what a leaky app keeps alive: a module global, a cache, a forgotten parent


def test_timer_left_running(qtbot):
    timer = QTimer()
    timer.start(1000)
    kept.append(timer)


def test_single_shot_left_pending(qtbot):
    QTimer.singleShot(5000, lambda: None)


def test_thread_left_running(qtbot):
    class Loop(QThread):
        def run(self):
            self.exec()

    thread = Loop()
    thread.start()
    kept.append(thread)


def test_window_left_open(qtbot):
    label = QLabel("left")
    label.setWindowTitle("orphan")
    label.show()
    kept.append(label)


def test_qt_warns_in_the_test(qtbot):
    qWarning("something is off")


@pytest.fixture
def warns_on_the_way_out():
    yield
    qWarning("a late warning")


def test_qt_warns_at_teardown(qtbot, warns_on_the_way_out):
    pass


def test_a_tidy_window_passes(qtbot):
    # shown on the offscreen platform: its size-hint chatter is ignored by name
    label = QLabel("fine")
    qtbot.addWidget(label)
    label.show()
    timer = QTimer(label)  # dies with its window
    timer.start(10)
    with qtbot.waitSignal(timer.timeout, timeout=5000):
        pass
"""

LEAKED_ENGINE_TEST = """
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready
from layerlab.core.load_plan import LoadPlan
from layerlab.core.demo_model import demo_model_path

kept = []


def test_forgets_to_stop_its_engine():
    sup = EngineSupervisor()
    sup.start(LoadPlan(str(demo_model_path()), n_ctx=256))
    kept.append(sup)
    state = sup.wait_for((Ready, Failed), 60)
    assert isinstance(state, Ready), state  # a real engine, up and holding its model
"""


def run_suite(tmp_path: Path, tests: str, imports: list[str], *args: str):
    """A small suite in tmp_path, with our pytest settings and the named conftest parts."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    ini = options["ini_options"]
    lines = ["[pytest]", "markers =", *(f"    {m}" for m in ini["markers"])]
    for key in ("qt_api", "qt_log_level_fail"):
        lines.append(f"{key} = {ini[key]}")
    lines += ["qt_log_ignore =", *(f"    {p}" for p in ini["qt_log_ignore"])]
    (tmp_path / "pytest.ini").write_text("\n".join(lines) + "\n")
    (tmp_path / "conftest.py").write_text(
        f"from tests.conftest import {', '.join(imports)}  # noqa: F401\n"
    )
    (tmp_path / "test_inner.py").write_text(tests)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def outcomes(out: str) -> dict[str, str]:
    """test name -> PASSED / FAILED / ERROR, from the -rA summary (an ERROR at teardown
    follows the test's own PASSED line, so the worst word wins)."""
    rank = {"PASSED": 0, "FAILED": 1, "ERROR": 2}
    got: dict[str, str] = {}
    for line in out.splitlines():
        word, _, rest = line.partition(" ")
        if word in rank and "::" in rest:
            name = rest.split("::", 1)[1].split(" ")[0]
            if rank[word] >= rank.get(got.get(name, "PASSED"), 0):
                got[name] = word
    return got


def test_gui_tests_fail_for_what_they_leave_behind_and_for_qt_warnings(tmp_path):
    r = run_suite(
        tmp_path, LEAKY_GUI_TESTS, ["qt_leaves_nothing_behind", "pytest_runtest_teardown"]
    )
    out = r.stdout + r.stderr
    assert outcomes(out) == {
        "test_timer_left_running": "ERROR",
        "test_single_shot_left_pending": "ERROR",
        "test_thread_left_running": "ERROR",
        "test_window_left_open": "ERROR",
        "test_qt_warns_in_the_test": "FAILED",
        "test_qt_warns_at_teardown": "ERROR",
        "test_a_tidy_window_passes": "PASSED",
    }, out
    # each says what was left and where it was started
    at = {  # the inner file's line where each was started
        what: LEAKY_GUI_TESTS.splitlines().index(f"    {what}") + 1
        for what in ("timer.start(1000)", "QTimer.singleShot(5000, lambda: None)", "thread.start()")
    }
    assert (
        "a QTimer every 1000 ms still running, started at "
        f"{tmp_path}/test_inner.py:{at['timer.start(1000)']} (test_timer_left_running)"
    ) in out
    assert (
        "a QTimer every 5000 ms still running, started at "
        f"{tmp_path}/test_inner.py:{at['QTimer.singleShot(5000, lambda: None)']} "
        "(test_single_shot_left_pending)"
    ) in out
    assert (
        "a QThread still running, started at "
        f"{tmp_path}/test_inner.py:{at['thread.start()']} (test_thread_left_running)"
    ) in out
    assert "QLabel 'orphan' still alive (shown)" in out
    assert "something is off" in out and "a late warning" in out
    assert r.returncode == 1


def test_an_engine_left_running_fails_the_run(tmp_path):
    r = run_suite(tmp_path, LEAKED_ENGINE_TEST, ["no_engine_outlives_the_suite"])
    out = r.stdout + r.stderr
    assert outcomes(out) == {"test_forgets_to_stop_its_engine": "ERROR"}, out  # passed, then
    assert "engine processes left running by the tests" in out
    assert r.returncode == 1, out


def test_a_run_that_collects_nothing_fails(tmp_path):
    """pytest says 5 for 'no tests'; run-tests.sh must turn that into a failure."""
    script = (ROOT / "scripts" / "run-tests.sh").read_text()
    tail = script[script.index("set +e") :]  # the part that runs pytest and reads its status
    tail = tail.replace(".venv/bin/python", sys.executable)
    (tmp_path / "test_inner.py").write_text("def test_something():\n    pass\n")
    r = subprocess.run(
        [
            "bash",
            "-euo",
            "pipefail",
            "-c",
            tail,
            "run-tests",
            "-p",
            "no:cacheprovider",
            "-k",
            "nothing",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "collected no tests" in r.stderr
