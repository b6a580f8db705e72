"""Start the window: the last model chosen (or the bundled demo) loads at once.

The window shows first; the demo model's checksum (seconds on a cold disk) is checked off
the GUI thread, and it loads once the check passes.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from layerlab.core.demo_model import (
    DEMO_NAME,
    DemoModelMissing,
    find_demo_model,
    verify_demo_model,
)
from layerlab.core.head import Head
from layerlab.core.settings import Settings
from layerlab.ui.about import app_icon
from layerlab.ui.main_window import MainWindow
from layerlab.ui.wiring.background import BackgroundLane


def choose_model(requested: str | None, settings: Settings) -> tuple[Path, str, str]:
    """(path, name, a word for the person) — a vanished model falls back to the demo.

    The demo is found, not yet checked: DemoCheck does that once the window shows."""
    wanted = requested or settings.model_path
    if wanted:
        path = Path(wanted)
        if path.is_file():
            return path, path.name, ""
        note = f"The model {path} is not there any more; the demo model is loaded instead."
        if not requested:
            settings.model_path = ""  # forget it, but only once the demo is found
    else:
        note = ""
    return find_demo_model(), DEMO_NAME, note


class DemoCheck(QObject):
    """The demo model's checksum, checked off the GUI thread while the window shows; the
    model loads once it passes, and a damaged file is named in the window."""

    def __init__(
        self,
        window: MainWindow,
        check: Callable[[Path], Path] = verify_demo_model,
        autoload: bool = True,
    ):
        super().__init__(window)
        self.window = window
        self.autoload = autoload
        self.problem = ""
        self.message: QMessageBox | None = None
        # Load would load the file before it is checked; it comes back either way (a
        # damaged demo is then the person's informed choice, and fails in the engine).
        window.load_bar.load_button.setEnabled(False)
        window.load_bar.say("Checking the demo model…")
        self._lane = BackgroundLane("demo-check", self)
        path = window.model_path
        self._lane.submit(lambda: check(path), self._passed, self._failed)

    @property
    def checking(self) -> bool:
        return self._lane.busy

    def _passed(self, _path: Path) -> None:
        self.window.load_bar.load_button.setEnabled(True)
        self.window.load_bar.say("")
        if self.autoload:
            self.window.load()

    def _failed(self, error: Exception) -> None:
        self.window.load_bar.load_button.setEnabled(True)
        if isinstance(error, DemoModelMissing):
            self.problem = str(error)
        else:  # unreadable (permissions, a vanished disk): said as it is, never raised
            self.problem = f"The demo model could not be checked: {error}"
        self.window.load_bar.say(self.problem)
        self.message = QMessageBox(
            QMessageBox.Icon.Critical, "LayerLab", self.problem, parent=self.window
        )
        self.message.open()  # window-modal and non-blocking: the window stays usable

    def close(self) -> None:
        self._lane.close()


def quit_on_signals(app: QApplication) -> QTimer:
    """Ctrl+C / SIGTERM close the window properly (engine stopped, settings saved).

    Python runs signal handlers only between bytecodes, so a timer gives it a chance while
    Qt's event loop sleeps in C++.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: app.closeAllWindows())
    tick = QTimer()
    tick.timeout.connect(lambda: None)
    tick.start(250)
    return tick


def add_help_menu(window: MainWindow) -> None:
    """Help > About LayerLab (the window itself stays as main_window builds it)."""
    from layerlab.ui.about import AboutDialog

    def about() -> None:
        # One box per window, made on first use (it asks llama.cpp for the devices then) and
        # kept: deleting a dialog on close while its signals are being delivered crashes
        # PySide6 (seen here).
        dialog = window.findChild(AboutDialog)
        if dialog is None:
            dialog = AboutDialog(window)
        dialog.open()

    window.menuBar().addMenu("&Help").addAction("&About LayerLab", about)


def welcome_once(window: MainWindow, head: Head) -> None:
    """The first start's welcome; the demo model loads meanwhile, as on every start."""
    from layerlab.ui.welcome import MODELS, WelcomeDialog

    dialog = WelcomeDialog(window)  # goes with the window
    dialog.chosen.connect(lambda choice: choice == MODELS and window.show_page("models"))

    def seen() -> None:
        head.settings.welcomed = True
        head.save_settings()

    dialog.finished.connect(seen)
    dialog.open()


def open_window(
    settings: Settings,
    model: str | None = None,
    autoload: bool = True,
    check_demo: Callable[[Path], Path] = verify_demo_model,
) -> MainWindow:
    """The window, shown; the model loads (the demo once `check_demo` passes it).

    Raises DemoModelMissing when the demo is needed and not installed at all (quick to tell).
    """
    path, name, note = choose_model(model, settings)
    head = Head(settings, Settings.default_path())
    window = MainWindow(head, path, name)
    add_help_menu(window)
    window.show()
    window.settle.start()
    if not settings.welcomed:
        welcome_once(window, head)
    if note:
        window.statusBar().showMessage(note, 15000)
    if name == DEMO_NAME:
        DemoCheck(window, check_demo, autoload)
    elif autoload:
        window.load()
    return window


def run_app(argv: list[str], model: str | None = None, autoload: bool = True) -> int:
    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName("LayerLab")
    app.setWindowIcon(app_icon())
    try:
        window = open_window(Settings.load(), model, autoload)
    except DemoModelMissing as e:
        QMessageBox.critical(None, "LayerLab", str(e))
        return 1
    tick = quit_on_signals(app)
    code = app.exec()
    tick.stop()
    if check := window.findChild(DemoCheck):
        check.close()  # a check still running loads nothing into a closed window
    window.bridge.shutdown()  # the window is gone: stopping the engine may take a moment
    return code


if __name__ == "__main__":
    sys.exit(run_app(sys.argv))
