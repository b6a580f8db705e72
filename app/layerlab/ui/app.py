"""Start the window: the demo model (or the last one chosen) loads at once."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtWidgets import QApplication, QMessageBox

from layerlab.core.demo_model import DEMO_NAME, DemoModelMissing, demo_model_path
from layerlab.core.settings import Settings
from layerlab.ui.engine_controller import EngineController
from layerlab.ui.main_window import MainWindow


def run_app(argv: list[str], model: str | None = None, autoload: bool = True) -> int:
    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName("LayerLab")
    settings = Settings.load()
    try:
        if model or settings.model_path:
            path = Path(model or settings.model_path)
            name = path.name
            if not path.is_file():
                raise DemoModelMissing(f"The model file {path} is not there any more.")
        else:
            path, name = demo_model_path(), DEMO_NAME
    except DemoModelMissing as e:
        QMessageBox.critical(None, "LayerLab", str(e))
        return 1
    controller = EngineController()
    window = MainWindow(controller, settings, path, name)
    window.show()
    if autoload:
        window.load()
    code = app.exec()
    controller.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(run_app(sys.argv))
