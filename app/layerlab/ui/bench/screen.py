"""The Bench screen: tick what to compare, Run, watch each configuration, read the table.

All the work is the head's bench (core/bench): configurations are built and measured off the
GUI thread; its events come back here as a signal. Apply fastest emits `planChosen` with the
winning plan (the window hands it to the layer map, which is what loads).
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from layerlab.core.bench import BenchChoices, BenchFinished, BenchProgress, BenchRun, BenchSettings
from layerlab.core.bench.export import FORMATS, _pct
from layerlab.ui.bench.chart import BenchChart

COLUMNS = [
    "configuration",
    "placement",
    "pp t/s",
    "predicted",
    "error",
    "tg t/s",
    "predicted",
    "error",
    "first token ms",
    "memory",
]


def _pm(m, sd) -> str:
    return "–" if m is None else f"{m:.1f} ± {sd or 0:.1f}"


def _n(x) -> str:
    return "–" if x is None else f"{x:.1f}"


class BenchScreen(QWidget):
    planChosen = Signal(object)  # LoadPlan: the fastest configuration, to load
    _event = Signal(object)  # from the bench's thread

    def __init__(self, head, parent: QWidget | None = None):
        super().__init__(parent)
        self.head = head
        self.run_result: BenchRun | None = None
        self._bars: list[QProgressBar] = []
        self._event.connect(self._on_event)

        self.strategies = QCheckBox("the planner's strategies")
        self.subsets = QCheckBox("with and without each worker")
        self.splits = QCheckBox("splits around the planner's best")
        self.modes = QCheckBox("split modes (row, none)")
        self.threads = QCheckBox("CPU thread counts")
        for box in (self.strategies, self.subsets, self.threads):
            box.setChecked(True)
        self.reps = QSpinBox()
        self.reps.setRange(1, 20)
        self.reps.setValue(3)
        self.reps.setPrefix("repetitions: ")
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.apply_button = QPushButton("Apply fastest")
        self.export_button = QPushButton("Export…")
        self.cancel_button.setEnabled(False)
        self.apply_button.setEnabled(False)
        self.export_button.setEnabled(False)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.failures = QLabel("")
        self.failures.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.chart = BenchChart()
        self._progress = QGridLayout()

        ticks = QHBoxLayout()
        for w in (self.strategies, self.subsets, self.splits, self.modes, self.threads):
            ticks.addWidget(w)
        ticks.addStretch(1)
        buttons = QHBoxLayout()
        for w in (self.reps, self.run_button, self.cancel_button, self.apply_button):
            buttons.addWidget(w)
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addLayout(ticks)
        layout.addLayout(buttons)
        layout.addWidget(self.message)
        layout.addLayout(self._progress)
        layout.addWidget(self.table, 2)
        layout.addWidget(self.chart, 1)
        layout.addWidget(self.failures)

        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.apply_button.clicked.connect(self.apply_fastest)
        self.export_button.clicked.connect(self._export_clicked)

    # -- running ------------------------------------------------------------------------
    def choices(self) -> BenchChoices:
        return BenchChoices(
            strategies=self.strategies.isChecked(),
            subsets=self.subsets.isChecked(),
            splits=self.splits.isChecked(),
            split_modes=self.modes.isChecked(),
            threads=(1, 2, 4) if self.threads.isChecked() else (),
        )

    def start(self, settings: BenchSettings | None = None) -> None:
        """Build the configurations and run them, all off the GUI thread."""
        settings = settings or BenchSettings(reps=self.reps.value())
        model = self.head.settings.model_path
        if not model:
            from layerlab.core.demo_model import demo_model_path

            model = str(demo_model_path())
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.message.setText("Preparing the configurations…")
        choices = self.choices()
        threading.Thread(
            target=self._prepare, args=(model, choices, settings), name="bench-prepare", daemon=True
        ).start()

    def _prepare(self, model: str, choices: BenchChoices, settings: BenchSettings) -> None:
        try:
            from layerlab.core.bench.configs import bench_context, comparisons
            from layerlab.core.planner.calibration import Calibration
            from layerlab.core.planner.inputs import (
                enabled_worker_devices,
                open_facts,
                this_machine_devices,
            )
            from layerlab.core.planner.planner import Planner

            facts = open_facts(model)
            devices = this_machine_devices() + enabled_worker_devices(
                self.head.enabled_addresses(), dict(self.head.results)
            )
            planner = Planner(facts, model)
            planner.speed_model.calibration = Calibration.load(self.head.bench.calibration_path)
            configs = comparisons(
                planner, devices, choices, bench_context(settings.n_prompt, settings.n_gen)
            )
            run = BenchRun(model, facts.name)
            self._event.emit(("configs", [c.name for c in configs]))
            self.head.bench.start(run, configs, settings, self._event.emit)
        except Exception as e:  # in words: a missing file, the model in use, ...
            self._event.emit(("problem", str(e)))

    def cancel(self) -> None:
        self.head.bench.cancel()
        self.message.setText("Cancelling…")

    def _on_event(self, event) -> None:
        if isinstance(event, tuple) and event[0] == "configs":
            self._make_bars(event[1])
            self.message.setText(f"Measuring {len(event[1])} configurations…")
        elif isinstance(event, tuple) and event[0] == "problem":
            self.message.setText(event[1])
            self.run_button.setEnabled(True)
            self.cancel_button.setEnabled(False)
        elif isinstance(event, BenchProgress):
            if event.index < len(self._bars):
                bar = self._bars[event.index]
                bar.setValue(int(event.fraction * 100))
                bar.setFormat(f"{event.row.name}: {event.stage}")
        elif isinstance(event, BenchFinished):
            self.run_button.setEnabled(True)
            self.cancel_button.setEnabled(False)
            self.show_run(event.run)

    def _make_bars(self, names: list[str]) -> None:
        for bar in self._bars:
            bar.deleteLater()
        self._bars = []
        for i, name in enumerate(names):
            bar = QProgressBar()
            bar.setFormat(f"{name}: waiting")
            bar.setTextVisible(True)
            self._progress.addWidget(bar, i // 2, i % 2)
            self._bars.append(bar)

    # -- the results ----------------------------------------------------------------------
    def show_run(self, run: BenchRun) -> None:
        self.run_result = run
        rows = run.measured
        self.table.setRowCount(len(rows))
        pp, tg = f"pp{run.n_prompt} t/s", f"tg{run.n_gen} t/s"
        self.table.setHorizontalHeaderLabels([*COLUMNS[:2], pp, *COLUMNS[3:5], tg, *COLUMNS[6:]])
        for i, r in enumerate(rows):
            c = r.config
            cells = [
                c.name,
                r.placement_text or c.placement_text,
                _pm(*r.pp),
                _n(c.predicted_pp),
                _pct(r.pp_error) or "–",
                _pm(*r.tg),
                _n(c.predicted_tg),
                _pct(r.tg_error) or "–",
                _n(r.first_token_ms),
                r.memory_text() or "–",
            ]
            for j, text in enumerate(cells):
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.chart.show_run(run)
        others = [r for r in run.rows if r.status != "measured"]
        self.failures.setText("\n".join(f"{r.name}: {r.reason}" for r in others) if others else "")
        best = run.fastest()
        self.apply_button.setEnabled(best is not None)
        self.export_button.setEnabled(bool(run.rows))
        if run.cancelled:
            self.message.setText("Cancelled.")
        elif best is not None:
            learned = f" Learned: {'; '.join(run.learned)}." if run.learned else ""
            self.message.setText(f"Fastest: {best.name} ({best.tg[0]:.1f} tok/s).{learned}")
        else:
            self.message.setText("Nothing could be measured.")

    def apply_fastest(self) -> None:
        best = self.run_result.fastest() if self.run_result else None
        if best is not None:
            self.planChosen.emit(best.config.plan.model_copy(deep=True))

    def export(self, path: str | Path) -> None:
        """Write the table: .md, .csv or .json (llama-bench's) by the file's ending."""
        assert self.run_result is not None
        path = Path(path)
        fmt = {".csv": "csv", ".json": "json"}.get(path.suffix.lower(), "md")
        path.write_text(FORMATS[fmt](self.run_result), encoding="utf-8")

    def _export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Export the bench",
            "bench.md",
            "Markdown (*.md);;CSV (*.csv);;llama-bench JSON (*.json)",
        )
        if path:
            try:
                self.export(path)
            except OSError as e:
                self.message.setText(f"Could not write {path}: {e.strerror or e}")
