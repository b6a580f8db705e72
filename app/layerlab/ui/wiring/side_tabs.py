"""The right-hand column's tabs: Workers, Devices, Layer map, Share, API.

The Devices panel samples only while its tab is shown (Spyder's BaseTimerStatus idea);
leaving the tab stops its lane without waiting on a probe.
"""

from __future__ import annotations

from PySide6.QtWidgets import QTabWidget, QWidget

from layerlab.ui.devices.panel import DevicesPanel


class SideTabs(QTabWidget):
    def __init__(
        self,
        workers: QWidget,
        devices: DevicesPanel,
        layer_map: QWidget,
        share: QWidget,
        api: QWidget,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.devices = devices
        self.setDocumentMode(True)
        self.addTab(workers, "Workers")
        self.addTab(devices, "Devices")
        self.addTab(layer_map, "Layer map")
        self.addTab(share, "Share")
        self.addTab(api, "API")
        self.currentChanged.connect(lambda _i: self._sample_if_shown())

    def _sample_if_shown(self) -> None:
        if self.currentWidget() is self.devices and self.isVisible():
            self.devices.start_sampling()
        else:
            self.devices.stop_sampling()

    def showEvent(self, event: object) -> None:
        super().showEvent(event)
        self._sample_if_shown()

    def hideEvent(self, event: object) -> None:
        super().hideEvent(event)
        self.devices.stop_sampling()
