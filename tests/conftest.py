"""Shared fixtures: the demo model, free ports, real RPC workers on loopback."""

from __future__ import annotations

import gc
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from weakref import WeakKeyDictionary

import pytest

from layerlab.core.cluster.worker_check import probe
from layerlab.core.demo_model import demo_model_path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The Workers list browses the LAN for workers when shown; tests keep mDNS off the real LAN
# (discovery tests name their own interfaces: loopback or their namespaces).
os.environ.setdefault("LAYERLAB_DISCOVERY", "off")
# The suite never reads or writes the person's own settings, chats, keys, calibration or logs:
# every platform directory (platformdirs reads these on each call, child processes inherit
# them) points into one folder made for this run.
_HOMES = Path(tempfile.mkdtemp(prefix="layerlab-tests-"))
# ...and no keyring: a store asked to use one keeps its secret in its file here (the
# keyring tests start a Secret Service of their own: tests/head/test_secrets_kept.py).
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
for _var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
    os.environ[_var] = str(_HOMES / _var.lower())


@pytest.fixture(autouse=True)
def _speeds_measured_by_earlier_tests_are_forgotten():
    """Every head that loads records the speeds it saw (core/bench/after_load.py) in the
    platform's calibration file, and every forecast reads it. Left there, one test's
    measurements on a loaded machine decided another's plan (tests/hub/test_fit.py failed
    on CI: the worker left out). Each test starts from the constants."""
    from layerlab.core.planner.calibration import calibration_path

    calibration_path().unlink(missing_ok=True)
    yield


@pytest.fixture(scope="session")
def demo_model() -> Path:
    return demo_model_path()


def free_port_pair() -> int:
    """A port p with p+1 also free (a worker serves its status on the next port)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p >= 65535:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port pair")


class ControlledProcess:
    """Faults a test can inflict on a child process, and a stop that always ends it."""

    proc: subprocess.Popen

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(5)

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def end(self) -> None:
        """Terminate (thawing first: a stopped process cannot act on SIGTERM), then kill."""
        if self.proc.poll() is None:
            self.thaw()
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class WorkerProcess(ControlledProcess):
    """A real `layerlab worker` on loopback, for tests."""

    def __init__(self, port: int, tmp: Path, threads: int = 1, cache: bool = True):
        self.port = port
        self.endpoint = f"127.0.0.1:{port}"
        cache_dir = str(tmp / f"cache-{port}") if cache else ""
        self.log = tmp / f"worker-{port}.log"
        self._log_file = open(self.log, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "layerlab.cli.main",
                "worker",
                "--listen",
                self.endpoint,
                "--threads",
                str(threads),
                "--cache-dir",
                cache_dir,
            ],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()}")
            if "ready on" in self.log.read_text():
                return
            time.sleep(0.05)
        raise RuntimeError(f"worker did not start: {self.log.read_text()}")

    def stop(self) -> None:
        self._log_file.close()
        self.end()

    def wait_idle(self, timeout: float = 10) -> None:
        wait_idle(self.endpoint, timeout)


def wait_idle(endpoint: str, timeout: float = 10) -> None:
    """Until the worker answers a probe again (it serves one head at a time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe(endpoint, timeout=0.5).ok:
            return
    raise TimeoutError(f"worker {endpoint} still busy")


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator:
    started: list[WorkerProcess] = []

    def start(threads: int = 1, cache: bool = True) -> WorkerProcess:
        w = WorkerProcess(free_port_pair(), tmp_path, threads, cache)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def worker(start_worker) -> WorkerProcess:
    return start_worker()


def engines(under: int | None = None) -> list:
    """The engine processes below this process (or below pid `under`), found from the
    outside as a person would (ps). Tests and benches share it."""
    import psutil

    found = []
    for c in psutil.Process(under).children(recursive=True):
        try:
            if "layerlab.core.engine.host" in " ".join(c.cmdline()):
                found.append(c)
        except psutil.Error:
            pass
    return found


def engine_pid(under: int | None = None) -> int:
    """The one engine process below this process (or below pid `under`)."""
    found = engines(under)
    if not found:
        raise AssertionError("no engine process")
    return found[0].pid


@pytest.fixture(scope="session", autouse=True)
def no_engine_outlives_the_suite():
    """Fail the run if any test left an engine process behind (a leaked model holds memory
    and a port). Module fixtures may keep one for their tests; the session end may not."""
    yield
    import psutil

    deadline = time.monotonic() + 10  # stop() calls still winding down
    left = engines()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in left:
        p.kill()
    assert not left, f"engine processes left running by the tests: {[p.pid for p in left]}"


# -- Qt hygiene: a GUI test fails for what it leaves behind ---------------------------------
# As napari's conftest does: a QTimer still running, a QThread still running or a top-level
# widget still alive once a GUI test and its fixtures are done fails THAT test (at teardown),
# and says where the timer or thread was started. Left alone they fire into the next test,
# or into widgets already deleted, and crash or fail it far from the cause. Qt warnings fail
# the test too: pytest-qt checks setup and call (qt_log_level_fail in pyproject.toml), and
# pytest_runtest_teardown below checks teardown, where closing widgets talks most.
ROOT = Path(__file__).resolve().parents[1]


def _is_gui_test(item: pytest.Item) -> bool:
    names = getattr(item, "fixturenames", ())
    return item.get_closest_marker("gui") is not None or "qtbot" in names or "qapp" in names


_LIBRARIES = tuple(
    {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
)


def _where_started() -> str:
    """The nearest frame in code of ours (not a library's, not this file's) that led here:
    the app's line that started a timer, or the test's line behind pytest-qt's own."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if name != __file__ and not name.startswith(_LIBRARIES) and not name.startswith("<"):
            shown = Path(name).relative_to(ROOT) if name.startswith(str(ROOT)) else name
            return f"{shown}:{frame.f_lineno} ({frame.f_code.co_name})"
        frame = frame.f_back
    return "somewhere outside our code"


def _settle_qt() -> None:
    """Let what the test closed go: Python cycles, then Qt's deferred deletes (deleteLater
    outside an event loop waits for an explicit request), then anything they posted."""
    from PySide6.QtCore import QCoreApplication, QEvent

    gc.collect()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QCoreApplication.processEvents()


@pytest.fixture(autouse=True)
def qt_leaves_nothing_behind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Autouse for GUI tests (marked `gui`, or using qtbot/qapp); others pass through."""
    if not _is_gui_test(request.node):
        yield
        return
    request.getfixturevalue("qapp")
    import shiboken6
    from PySide6.QtCore import QObject, QThread, QTimer
    from PySide6.QtWidgets import QApplication

    timers: WeakKeyDictionary = WeakKeyDictionary()  # QTimer -> where it was started
    threads: WeakKeyDictionary = WeakKeyDictionary()  # QThread -> where it was started
    qt_timer_start, qt_single_shot, qt_thread_start = QTimer.start, QTimer.singleShot, QThread.start

    def timer_start(self, *args):
        timers[self] = _where_started()
        qt_timer_start(self, *args)

    def single_shot(msec, *args):
        # Tracked as a real QTimer when it is (msec, callable) or (msec, context, callable);
        # a context-owned timer dies with its context, as Qt's own single shot does.
        if len(args) == 1 and callable(args[0]):
            context, slot = None, args[0]
        elif len(args) == 2 and isinstance(args[0], QObject) and callable(args[1]):
            context, slot = args
        else:
            return qt_single_shot(msec, *args)
        timer = QTimer(context)
        timer.setSingleShot(True)
        timer.timeout.connect(slot)
        if context is None:
            keep.append(timer)  # Qt's own single shot keeps itself alive until it fires
        timers[timer] = _where_started()
        qt_timer_start(timer, msec)

    def thread_start(self, *args):
        threads[self] = _where_started()
        qt_thread_start(self, *args)

    keep: list = []
    monkeypatch.setattr(QTimer, "start", timer_start)
    monkeypatch.setattr(QTimer, "singleShot", staticmethod(single_shot))
    monkeypatch.setattr(QThread, "start", thread_start)
    widgets_before = {shiboken6.getCppPointer(w)[0] for w in QApplication.topLevelWidgets()}

    yield

    _settle_qt()
    left: list[str] = []
    for thread, where in list(threads.items()):
        if shiboken6.isValid(thread) and thread.isRunning():
            left.append(f"a QThread still running, started at {where}")
            thread.quit()
            thread.wait(2000)
    for timer, where in list(timers.items()):
        if shiboken6.isValid(timer) and timer.isActive():
            left.append(f"a QTimer every {timer.interval()} ms still running, started at {where}")
            timer.stop()
    for w in QApplication.topLevelWidgets():
        if shiboken6.getCppPointer(w)[0] in widgets_before:
            continue
        title = f" {w.windowTitle()!r}" if w.windowTitle() else ""
        left.append(
            f"a top-level {type(w).__module__}.{type(w).__qualname__}{title} still alive "
            f"({'shown' if w.isVisible() else 'hidden'}); hand it to qtbot.addWidget or "
            "close and delete it"
        )
        w.close()
        w.deleteLater()
    keep.clear()
    _settle_qt()  # what was stopped above must not leak into the next test either
    if left:
        pytest.fail("the test left Qt objects behind:\n  " + "\n  ".join(left), pytrace=False)


def _qt_fail_levels(config: pytest.Config) -> set:
    from PySide6.QtCore import QtMsgType

    level = config.getini("qt_log_level_fail") or "NO"
    return {
        "NO": set(),
        "CRITICAL": {QtMsgType.QtCriticalMsg, QtMsgType.QtFatalMsg},
        "WARNING": {QtMsgType.QtWarningMsg, QtMsgType.QtCriticalMsg, QtMsgType.QtFatalMsg},
    }.get(level, {QtMsgType.QtWarningMsg, QtMsgType.QtCriticalMsg, QtMsgType.QtFatalMsg})


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    """Qt warnings during a GUI test's teardown fail it, as pytest-qt's qt_log_level_fail
    does for setup and call (pytest-qt stops listening when the call is reported)."""
    if not _is_gui_test(item) or "PySide6.QtWidgets" not in sys.modules:
        return (yield)
    from PySide6.QtCore import qInstallMessageHandler

    heard: list[str] = []
    fail_on = _qt_fail_levels(item.config)
    ignore = [re.compile(p) for p in item.config.getini("qt_log_ignore")]

    def hear(kind, _context, message: str) -> None:
        sys.stderr.write(f"Qt: {message}\n")  # as Qt's default handler would
        if kind in fail_on and not any(p.search(message) for p in ignore):
            heard.append(f"{kind.name}: {message}")

    previous = qInstallMessageHandler(hear)
    try:
        result = yield
    finally:
        qInstallMessageHandler(previous)
    if heard:
        pytest.fail("Qt warned during teardown:\n  " + "\n  ".join(heard), pytrace=False)
    return result
