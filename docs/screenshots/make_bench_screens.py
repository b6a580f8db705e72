"""The Bench screen after a finished comparison on the demo model (real engine, this CPU):
the planner's pick and the thread sweep, the table with forecasts and errors, the chart.

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python docs/screenshots/make_bench_screens.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtWidgets import QApplication

from layerlab.core.bench import BenchSettings
from layerlab.core.demo_model import demo_model_path
from layerlab.core.head.head import Head
from layerlab.core.settings import Settings
from layerlab.ui.bench.screen import BenchScreen

HERE = Path(__file__).resolve().parent


def main() -> None:
    app = QApplication.instance() or QApplication(sys.argv)
    with tempfile.TemporaryDirectory() as tmp:
        head = Head(Settings(model_path=str(demo_model_path())), persist=False, state_dir=Path(tmp))
        screen = BenchScreen(head)
        screen.resize(1300, 820)
        for box in (screen.subsets, screen.splits):
            box.setChecked(False)
        screen.modes.setChecked(True)  # "no split" and row need devices; none here: skipped
        screen.show()
        screen.start(BenchSettings(n_prompt=128, n_gen=32, reps=3))
        while screen.run_result is None:
            app.processEvents()
            time.sleep(0.02)  # leave the CPU to the engine being measured
        app.processEvents()
        screen.grab().save(str(HERE / "bench-finished.png"))
        head.close()
    print("wrote", HERE / "bench-finished.png")


if __name__ == "__main__":
    main()
