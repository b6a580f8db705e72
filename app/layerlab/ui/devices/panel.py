"""DevicesPanel: every device in the house as a gauge, grouped by machine.

The panel owns its feed and samples only while shown (2 Hz), slower while hidden
(Spyder's BaseTimerStatus idea); `stop_sampling()` ends it. It never waits on a probe.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QLabel,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from layerlab.core.devices.inventory import Inventory
from layerlab.core.devices.model import DeviceInfo, DeviceSample
from layerlab.ui.devices.feed import DeviceFeed
from layerlab.ui.devices.gauge import DeviceGauge

COLUMNS = 2


class DevicesPanel(QWidget):
    def __init__(
        self, parent: QWidget | None = None, feed: DeviceFeed | None = None, auto_start: bool = True
    ):
        super().__init__(parent)
        self.feed = feed or DeviceFeed(self)
        if self.feed.parent() is None:
            self.feed.setParent(self)
        self.auto_start = auto_start
        self.gauges: dict[str, DeviceGauge] = {}
        self.groups: dict[str, QGroupBox] = {}
        self._names: dict[str, str] = {}  # llama.cpp / engine device name -> gauge key
        self._placement: dict[str, str] = {}
        self._model_memory: dict[str, int] = {}

        self.status = QLabel("Looking for devices…")
        self.status.setObjectName("devicesStatus")
        self.status.setWordWrap(True)
        self._body = QWidget()
        self._body_layout = QVBoxLayout(self._body)
        self._body_layout.setAlignment(Qt.AlignmentFlag.AlignTop)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(self._body)
        lay = QVBoxLayout(self)
        lay.addWidget(self.status)
        lay.addWidget(scroll, 1)

        self.feed.inventory_ready.connect(self._on_inventory)
        self.feed.samples_ready.connect(self._on_samples)

    # -- public API ---------------------------------------------------------------------
    def start_sampling(self) -> None:
        self.feed.start()

    def stop_sampling(self) -> None:
        self.feed.stop(wait=0)  # never waits on a probe: the lane ends after its round

    def set_workers(self, endpoints: list[str]) -> None:
        self.feed.set_workers(endpoints)

    def set_layer_placement(self, placement: dict[str, str]) -> None:
        """{llama.cpp / engine device name: 'layers 10-29 + output'}; {} clears it."""
        self._placement = dict(placement)
        self._apply_model()

    def set_model_memory(self, memory: dict[str, int]) -> None:
        """{device name: bytes the loaded model holds there}; {} clears it."""
        self._model_memory = dict(memory)
        self._apply_model()

    def gauge_for(self, llama_name: str) -> DeviceGauge | None:
        key = self._names.get(llama_name)
        return self.gauges.get(key) if key else None

    # -- Qt -----------------------------------------------------------------------------
    def showEvent(self, event: object) -> None:
        self.feed.set_visible(True)
        if self.auto_start:
            self.feed.start()
        super().showEvent(event)

    def hideEvent(self, event: object) -> None:
        self.feed.set_visible(False)
        super().hideEvent(event)

    def closeEvent(self, event: object) -> None:
        self.feed.stop()
        super().closeEvent(event)

    # -- from the feed ------------------------------------------------------------------
    def _on_inventory(self, invs: list[Inventory]) -> None:
        for g in self.groups.values():
            g.hide()
            g.deleteLater()
        self.groups = {}
        keep: dict[str, DeviceGauge] = {}
        self._names = {}
        lines = []
        for inv in invs:
            box = QGroupBox(self._machine_title(inv))
            grid = QGridLayout(box)
            grid.setSpacing(8)
            if not inv.machine.devices:
                grid.addWidget(QLabel("not answering: " + "; ".join(inv.notes)), 0, 0)
            for n, info in enumerate(inv.machine.devices):
                gauge = self.gauges.pop(info.key, None)
                if gauge is None:
                    gauge = DeviceGauge(info)
                else:
                    gauge.set_info(info)
                keep[info.key] = gauge
                grid.addWidget(gauge, n // COLUMNS, n % COLUMNS)
                if info.llama_name:
                    self._names[info.llama_name] = info.key
            for name, key in inv.llama_names.items():
                self._names.setdefault(name, key)
            self._body_layout.addWidget(box)
            self.groups[inv.machine.name] = box
            if inv.cpu_only_line and inv is invs[0]:
                lines.append(inv.cpu_only_line)
            if inv.llama_problem:
                lines.append(f"llama.cpp's device list: {inv.llama_problem}")
        for g in self.gauges.values():
            g.deleteLater()
        self.gauges = keep
        n_gpus = sum(1 for g in keep.values() if g.info.kind != "cpu")
        if not lines:
            lines.append(
                f"{n_gpus} GPU{'s' if n_gpus != 1 else ''} on {len(invs)} "
                f"machine{'s' if len(invs) != 1 else ''}."
            )
        self.status.setText(" ".join(lines))
        self._apply_model()

    @staticmethod
    def _machine_title(inv: Inventory) -> str:
        name = inv.machine.name
        host = next((d for d in inv.machine.devices if d.kind == "cpu"), None)
        return name if host is None or name != "this machine" else f"This machine ({host.name})"

    def _on_samples(self, samples: dict[str, DeviceSample]) -> None:
        for key, s in samples.items():
            g = self.gauges.get(key)
            if g is not None:
                g.update_sample(s)

    def _apply_model(self) -> None:
        by_key_text = {self._names[n]: t for n, t in self._placement.items() if n in self._names}
        by_key_mem = {self._names[n]: b for n, b in self._model_memory.items() if n in self._names}
        for key, g in self.gauges.items():
            g.set_placement(by_key_text.get(key, ""))
            g.set_model_memory(by_key_mem.get(key, 0))

    def infos(self) -> list[DeviceInfo]:
        return [g.info for g in self.gauges.values()]
