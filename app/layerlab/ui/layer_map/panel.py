"""LayerMapPanel: the model's layers over the person's devices, re-planned on every change.

Public API for the main window:
    panel = LayerMapPanel(parent)
    panel.set_model_facts(facts, model_path)
    panel.set_machines([this_machine, *workers])   # workers: Machine named 'host:port'
    panel.planChanged.connect(engine.load)          # LoadPlan
    panel.show_actual({"CUDA0": bytes, ...})        # after load: forecast beside actual
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QScrollArea, QVBoxLayout, QWidget

from layerlab.core.devices.model import Machine
from layerlab.core.gguf.facts import ModelFacts
from layerlab.core.load_plan import LoadPlan
from layerlab.core.planner.devices import PlanDevice
from layerlab.core.planner.planner import PlanResult
from layerlab.ui.layer_map.adapter import PlanModel
from layerlab.ui.layer_map.colors import COMPUTE, KV, RESERVE, WEIGHTS, device_color
from layerlab.ui.layer_map.controls import PlanControls
from layerlab.ui.layer_map.device_row import DeviceRow
from layerlab.ui.layer_map.layer_ribbon import LayerRibbon


class LayerMapPanel(QWidget):
    planChanged = Signal(LoadPlan)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = PlanModel(self)
        self.title = QLabel("Open a model to see where its layers go.")
        self.title.setWordWrap(True)
        self.controls = PlanControls()
        self.ribbon = LayerRibbon()
        self.summary = QLabel("")
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setWordWrap(True)
        self.legend = QLabel(
            f"<span style='color:{WEIGHTS.name()}'>■</span> weights &nbsp; "
            f"<span style='color:{KV.name()}'>■</span> KV cache &nbsp; "
            f"<span style='color:{COMPUTE.name()}'>■</span> compute &nbsp; "
            f"<span style='color:{RESERVE.name()}'>■</span> reserve &nbsp; "
            "▭ free memory"
        )
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.rows_box = QVBoxLayout()
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        self.notes.setStyleSheet("color: #57606f;")
        # The map wants ~700-800 px (controls, device rows); in a narrower panel it scrolls
        # sideways instead of widening the whole window past a 1280-px screen.
        content = QWidget()
        area = QScrollArea()
        area.setWidgetResizable(True)
        area.setFrameShape(QScrollArea.Shape.NoFrame)
        area.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(area)
        lay = QVBoxLayout(content)
        lay.addWidget(self.title)
        lay.addWidget(self.controls)
        lay.addWidget(self.ribbon)
        lay.addWidget(self.summary)
        lay.addWidget(self.legend)
        lay.addLayout(self.rows_box)
        lay.addWidget(self.notes)
        lay.addStretch(1)
        self.rows: dict[str, DeviceRow] = {}
        self._actual: dict[str, int] | None = None

        self.model.planned.connect(self._show)
        self.model.failed.connect(lambda msg: self.summary.setText(f"<b>Cannot plan:</b> {msg}"))
        self.controls.strategyChanged.connect(self._strategy)
        self.controls.threadsChanged.connect(lambda n: self.model.update(n_threads=n))
        self.controls.parallelChanged.connect(lambda n: self.model.update(parallel=n))
        self.controls.contextChanged.connect(lambda n: self.model.update(n_ctx=n))
        self.controls.cacheTypeChanged.connect(
            lambda t: self.model.update(type_k=t, type_v=t, flash_attn=True)
        )
        self.ribbon.splitDragged.connect(self.model.set_split)

    # ---- public API ----------------------------------------------------------------------
    def set_model_facts(self, facts: ModelFacts, model_path: str = "") -> None:
        self.title.setText(f"<b>{facts.describe()}</b>")
        self._actual = None
        self.model.set_facts(facts, model_path)

    def set_machines(self, machines: list[Machine], rtts: dict[str, float] | None = None) -> None:
        self.model.set_machines(machines, rtts)

    def set_devices(self, devices: list[PlanDevice]) -> None:
        self.model.set_devices(devices)

    def show_actual(self, actual: dict[str, int] | None) -> None:
        """What llama.cpp really allocated per device label (None clears it)."""
        self._actual = dict(actual) if actual else None
        if self.model.result:
            self._show_actual(self.model.result)

    @property
    def result(self) -> PlanResult | None:
        return self.model.result

    # ---- internals -------------------------------------------------------------------------
    def _strategy(self, key: str) -> None:
        self.model.update(strategy=key, cpu_layers=None)

    def _ensure_rows(self) -> None:
        labels = [d.label for d in self.model.devices]
        if list(self.rows) == labels:
            return
        for row in self.rows.values():
            self.rows_box.removeWidget(row)
            row.deleteLater()
        self.rows = {}
        for i, d in enumerate(self.model.devices):
            row = DeviceRow(d, i)
            row.ratioEdited.connect(self.model.set_ratio)
            row.reserveEdited.connect(self.model.set_reserve)
            row.excludeToggled.connect(self.model.set_excluded)
            self.rows_box.addWidget(row)
            self.rows[d.label] = row

    def _show(self, r: PlanResult) -> None:
        self._ensure_rows()
        opts = self.model.options
        self.controls.show_values(opts.strategy, r.plan.n_ctx, opts.type_k, r.plan.parallel)
        self.controls.show_threads(opts.n_threads)
        order = [d.label for d in self.model.devices]
        labels = [row.device.label for row in r.devices]
        counts = [r.devices[0].last - r.devices[0].first] + [row.n_units for row in r.devices[1:]]
        if r.devices[0].has_output:
            counts[0] += 1
        self.ribbon.set_segments(labels, counts, [device_color(order.index(lb)) for lb in labels])
        by_label = {row.device.label: row for row in r.devices}
        arranged = {d.label: d for d in self.model.devices}
        for label, w in self.rows.items():
            plan_row = by_label.get(label)
            dev = (
                plan_row.device
                if plan_row
                else arranged[label].with_(
                    reserve=opts.reserves.get(label, 0), excluded=label in opts.excluded
                )
            )
            w.show_plan(plan_row, dev)
        color = {"fits": "#10ac84", "fits with CPU offload": "#ff9f43"}.get(r.verdict, "#ee5253")
        self.summary.setText(
            f"<span style='color:{color}'><b>{r.verdict}</b></span> · context "
            f"{r.plan.n_ctx:,} · predicted <b>{r.speed.prompt_tps:.0f}</b> tok/s prompt, "
            f"<b>{r.speed.generation_tps:.1f}</b> tok/s generation"
        )
        self.notes.setText("\n".join([*(f"Changed: {c}" for c in r.changes), *r.notes]))
        self._show_actual(r)
        self.planChanged.emit(r.plan)

    def _show_actual(self, r: PlanResult) -> None:
        by_label = {row.device.label: row for row in r.devices}
        for label, w in self.rows.items():
            row = by_label.get(label)
            actual = self._actual.get(label) if self._actual else None
            w.show_actual(row.memory.total if row else 0, actual)
