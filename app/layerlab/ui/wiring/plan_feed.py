"""Feeds the layer map its inputs: the model's GGUF facts, this machine's devices and the
enabled workers' devices. Header reading and hardware probing run in a background lane;
the map re-plans on the GUI thread when an input arrives (planning takes milliseconds).

What the map shows is what loads: `request_plan()` hands the map's LoadPlan to the caller
once the inputs are known (or after a short wait, with whatever the map has by then).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from layerlab.core.gguf import ModelFacts
from layerlab.core.load_plan import LoadPlan
from layerlab.core.planner.devices import PlanDevice
from layerlab.core.planner.inputs import open_facts, this_machine_devices
from layerlab.ui.head_bridge import HeadBridge
from layerlab.ui.layer_map.panel import LayerMapPanel
from layerlab.ui.wiring.background import BackgroundLane

LOAD_WAIT_MS = 8000  # a Load pressed before the workers answered waits at most this long


class PlanFeeder(QObject):
    settledChanged = Signal(bool)  # the map plans with every input known

    def __init__(self, layer_map: LayerMapPanel, bridge: HeadBridge, parent: QObject | None = None):
        super().__init__(parent)
        self.map = layer_map
        self.head = bridge.head  # the workers and their probe answers
        self.lane = BackgroundLane("plan-inputs", self)
        self.model_path = ""
        self.facts: ModelFacts | None = None
        self.facts_problem = ""
        self._facts_for = ""  # the path the facts (or the problem) belong to
        self.local: list[PlanDevice] | None = None
        self._worker_devices: list[PlanDevice] = []
        self._seen: dict[str, int] = {}
        self._waiting: Callable[[LoadPlan | None], None] | None = None
        self._wait_timer = QTimer(self)
        self._wait_timer.setSingleShot(True)
        self._wait_timer.timeout.connect(self._give_plan)
        bridge.workerUpdated.connect(self._worker_probed)
        bridge.workersChanged.connect(self.workers_changed)

    # ---- inputs ------------------------------------------------------------------------
    def set_model(self, path: str | Path) -> None:
        """Read the model's header off the GUI thread; the map re-plans when it arrives."""
        self.model_path = str(path)
        self.lane.submit(
            lambda p=self.model_path: (p, open_facts(p)),
            self._facts_read,
            lambda e, p=self.model_path: self._facts_failed(p, e),
        )

    def probe_this_machine(self) -> None:
        """Probe this machine's devices (NVML, sysfs, host) off the GUI thread."""
        self.lane.submit(this_machine_devices, self._local_read, self._local_failed)

    def workers_changed(self) -> None:
        self._check_results(force=True)

    def _worker_probed(self, _address: str) -> None:
        self._check_results()

    # ---- the plan ----------------------------------------------------------------------
    @property
    def settled(self) -> bool:
        """Facts for the current model read (or failed), this machine probed, and every
        enabled worker answered."""
        results = self.head.results
        return (
            self._facts_for == self.model_path
            and self.local is not None
            and all(a in results for a in self.head.enabled_addresses())
        )

    def current_plan(self) -> LoadPlan | None:
        """The map's plan for the current model, or None when the map has none for it."""
        r = self.map.result
        if r is None or r.plan.model_path != self.model_path or self.facts is None:
            return None
        return r.plan

    def request_plan(self, callback: Callable[[LoadPlan | None], None]) -> None:
        """Call back with the map's plan as soon as the inputs are known (at once if they
        are), or after LOAD_WAIT_MS with whatever the map has. None: the map has no plan."""
        self._waiting = callback
        if self.settled:
            self._give_plan()
        else:
            self._wait_timer.start(LOAD_WAIT_MS)

    @property
    def waiting(self) -> bool:
        return self._waiting is not None

    def _give_plan(self) -> None:
        self._wait_timer.stop()
        callback, self._waiting = self._waiting, None
        if callback is not None:
            callback(self.current_plan())

    def _maybe_settled(self) -> None:
        settled = self.settled
        self.settledChanged.emit(settled)
        if settled and self._waiting is not None:
            self._give_plan()

    # ---- answers (GUI thread) ------------------------------------------------------------
    def _facts_read(self, value: tuple[str, ModelFacts]) -> None:
        path, facts = value
        if path != self.model_path:
            return  # a model chosen before this one
        self.facts, self.facts_problem, self._facts_for = facts, "", path
        self.map.set_model_facts(facts, path)
        self._maybe_settled()

    def _facts_failed(self, path: str, error: Exception) -> None:
        if path != self.model_path:
            return
        self.facts, self.facts_problem, self._facts_for = None, str(error), path
        name, words = Path(path).name, str(error)
        # the model file check names the file itself ("x.gguf is damaged or incomplete: ...")
        self.map.title.setText(words if name in words else f"Cannot read {name}: {words}")
        self._maybe_settled()

    def _local_read(self, devices: list[PlanDevice]) -> None:
        self.local = devices
        self._push_devices()

    def _local_failed(self, error: Exception) -> None:
        # Without the probes the map still plans for the CPU: llama.cpp always has it.
        from layerlab.core.planner.devices import host_device

        self.local = [host_device(0, 0, f"Host RAM (not read: {error})")]
        self._push_devices()

    def _check_results(self, force: bool = False) -> None:
        results = self.head.results
        seen = {a: id(r) for a, r in results.items()}
        if seen == self._seen and not force:
            return
        self._seen = seen
        devices = self.head.worker_devices()
        if devices != self._worker_devices or force:
            self._worker_devices = devices
            self._push_devices()
        else:
            self._maybe_settled()

    def _push_devices(self) -> None:
        if self.local is None:
            return
        self.map.set_devices([*self.local, *self._worker_devices])
        self._maybe_settled()

    def close(self) -> None:
        self._wait_timer.stop()
        self.lane.close()
