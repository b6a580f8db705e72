"""Start the window: the last model chosen (or the bundled demo) loads at once."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from layerlab.core.demo_model import DEMO_NAME, DemoModelMissing, demo_model_path
from layerlab.core.head import Head
from layerlab.core.settings import Settings
from layerlab.ui.about import app_icon
from layerlab.ui.main_window import MainWindow


def choose_model(requested: str | None, settings: Settings) -> tuple[Path, str, str]:
    """(path, name, a word for the person) — a vanished model falls back to the demo."""
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
    return demo_model_path(), DEMO_NAME, note


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


def run_app(argv: list[str], model: str | None = None, autoload: bool = True) -> int:
    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName("LayerLab")
    settings = Settings.load()
    try:
        path, name, note = choose_model(model, settings)
    except DemoModelMissing as e:
        QMessageBox.critical(None, "LayerLab", str(e))
        return 1
    head = Head(settings, Settings.default_path())
    window = MainWindow(head, path, name)
    app.setWindowIcon(app_icon())
    add_help_menu(window)
    window.show()
    if not settings.welcomed:
        welcome_once(window, head)
    if note:
        window.statusBar().showMessage(note, 15000)
    tick = quit_on_signals(app)
    if autoload:
        window.load()
    code = app.exec()
    tick.stop()
    window.bridge.shutdown()  # the window is gone: stopping the engine may take a moment
    return code


if __name__ == "__main__":
    sys.exit(run_app(sys.argv))
