"""The thin Qt side of the planner: holds the inputs, re-plans on every change, emits results.

Planning is pure core code and takes a few milliseconds, so it runs on the GUI thread;
only the dry-run calibration (a child process) would need a worker, and it is not here.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from layerlab.core.devices.model import Machine
from layerlab.core.gguf.facts import ModelFacts
from layerlab.core.load_plan import LoadPlan
from layerlab.core.planner.calibration import Calibration
from layerlab.core.planner.devices import PlanDevice, devices_from_machine
from layerlab.core.planner.planner import Planner, PlanOptions, PlanResult


class PlanModel(QObject):
    """Inputs of one plan (model, devices, options) and its latest result."""

    planned = Signal(object)  # PlanResult
    failed = Signal(str)
    _calibrationRead = Signal(int, object)  # from the reading thread: (read number, figures)
    _calibrationChanged = Signal()  # from a bench's or a load's thread: new figures written

    def __init__(self, parent: QObject | None = None, calibration_path: Path | None = None):
        super().__init__(parent)
        self._planner: Planner | None = None
        # what the bench and loads measured (a file, read off the GUI thread): the forecasts
        # use it as soon as it is read, and every planner made after it
        self._calibration: Calibration | None = None
        self._calibration_path = calibration_path
        self._reads = 0  # only the latest read counts: an earlier one may finish later
        self._calibrationRead.connect(self._use_calibration)
        self._calibrationChanged.connect(lambda: self.reload_calibration())
        self.reload_calibration(calibration_path)
        self._devices: list[PlanDevice] = []
        self.options = PlanOptions()
        self.result: PlanResult | None = None

    # ---- inputs ----------------------------------------------------------------------
    def set_facts(self, facts: ModelFacts, model_path: str = "") -> None:
        self._planner = Planner(facts, model_path, self._calibration)
        self.options.ratios = {}
        self.options.cpu_layers = None
        self.replan()

    def set_machines(self, machines: list[Machine], rtts: dict[str, float] | None = None) -> None:
        """machines[0] is this machine; the others are workers named 'host:port'."""
        devices: list[PlanDevice] = []
        for i, m in enumerate(machines):
            worker = None if i == 0 else m.name
            rtt = (rtts or {}).get(m.name, 0.0)
            devs = devices_from_machine(m, worker=worker, rtt_s=rtt)
            if worker is not None:
                devs = [d for d in devs if not d.is_host]
            devices += devs
        self.set_devices(devices)

    def set_devices(self, devices: list[PlanDevice]) -> None:
        # llama.cpp's order, as the planner uses it: the host, workers, then local GPUs
        self._devices = sorted(devices, key=lambda d: 0 if d.is_host else (1 if not d.local else 2))
        self.replan()

    @property
    def devices(self) -> list[PlanDevice]:
        return list(self._devices)

    def update(self, **changes) -> None:
        """Change options (strategy, n_ctx, type_k, ...) and re-plan."""
        self.options = replace(self.options, **changes)
        self.replan()

    def set_split(self, counts: list[int]) -> None:
        """A dragged map: counts[0] blocks stay on the CPU, the rest are device units."""
        labels = [d.device.label for d in self.result.devices[1:]] if self.result else []
        ratios = {lb: float(c) for lb, c in zip(labels, counts[1:], strict=False)}
        self.options = replace(self.options, strategy="manual", ratios=ratios, cpu_layers=counts[0])
        self.replan()

    def set_ratio(self, label: str, value: float) -> None:
        ratios = dict(self.options.ratios) or self._current_ratios()
        ratios[label] = value
        self.options = replace(self.options, strategy="manual", ratios=ratios)
        self.replan()

    def set_reserve(self, label: str, nbytes: int) -> None:
        reserves = dict(self.options.reserves)
        reserves[label] = nbytes
        self.options = replace(self.options, reserves=reserves)
        self.replan()

    def set_excluded(self, label: str, excluded: bool) -> None:
        ex = set(self.options.excluded)
        (ex.add if excluded else ex.discard)(label)
        self.options = replace(self.options, excluded=ex)
        self.replan()

    def apply_plan(self, plan: LoadPlan) -> None:
        """Show `plan` (the bench's fastest) as the map's own: its devices and shares as a
        manual split, its blocks kept on the CPU, its context and KV types."""
        labels = [d.label for d in plan.devices]
        shares = plan.tensor_split or [1.0] * len(labels)
        n_units = self._planner.facts.n_units if self._planner else 0
        offloaded = n_units if plan.n_gpu_layers < 0 else min(plan.n_gpu_layers, n_units)
        known = {d.label for d in self._devices if not d.is_host}
        self.options = replace(
            self.options,
            strategy="manual",
            ratios=dict(zip(labels, shares, strict=True)),
            excluded=known - set(labels),
            cpu_layers=max(n_units - offloaded, 0),
            n_ctx=plan.n_ctx or self.options.n_ctx,
            type_k=plan.type_k,
            type_v=plan.type_v,
            flash_attn=plan.flash_attn,
            n_ubatch=plan.n_ubatch,
        )
        self.replan()

    def reload_calibration(self, path: Path | None = None) -> None:
        """Read the recorded figures again (after a bench or a load) and re-plan with them;
        `path` replaces the file read from now on (None: the same one as before)."""
        if path is not None:
            self._calibration_path = path
        path = self._calibration_path
        self._reads += 1
        n = self._reads

        def read() -> None:
            cal = Calibration.load(path)
            with contextlib.suppress(RuntimeError):  # the model went with its window
                self._calibrationRead.emit(n, cal)

        threading.Thread(target=read, name="calibration", daemon=True).start()

    def follow_calibration(self, bench) -> None:
        """Forecast with the figures `bench` (core/bench BenchRunner) records, and read them
        again each time it says a run or a load recorded new ones; without this the map
        kept the figures read at start until the app restarted."""
        unsubscribe = bench.on_learned(lambda _said: self._tell_changed())
        self.destroyed.connect(lambda *_: unsubscribe())
        self._calibration_path = bench.calibration_path  # the file the bench writes
        self.reload_calibration()

    def _tell_changed(self) -> None:
        with contextlib.suppress(RuntimeError):  # called from the bench's thread
            self._calibrationChanged.emit()

    def _use_calibration(self, n: int, cal: Calibration) -> None:
        if n != self._reads:
            return  # a later read is on its way
        self._calibration = cal
        if self._planner is not None:
            self._planner.speed_model.calibration = cal
            self.replan()

    def _current_ratios(self) -> dict[str, float]:
        if not self.result:
            return {}
        return {r.device.label: float(r.n_units) for r in self.result.devices[1:]}

    # ---- planning ----------------------------------------------------------------------
    def replan(self) -> None:
        if self._planner is None or not any(d.is_host for d in self._devices):
            return
        try:
            self.result = self._planner.plan(self._devices, self.options)
        except ValueError as e:
            self.failed.emit(str(e))
            return
        self.planned.emit(self.result)
