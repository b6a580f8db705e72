"""DeviceGauge: one device at a glance: name, memory, load, heat, power, history, layers."""

from __future__ import annotations

import re

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from layerlab.core.devices.model import DeviceInfo, DeviceSample
from layerlab.core.units import format_bytes
from layerlab.ui.devices.history_line import HistoryLine
from layerlab.ui.devices.memory_bar import MemoryBar

_KIND = {"gpu": "GPU", "igpu": "integrated GPU", "cpu": "CPU + RAM"}
_CPU_NOISE = re.compile(r"\(R\)|\(TM\)|\d+th Gen |\d+-Core Processor| CPU| @ [\d.]+GHz")


def display_name(info: DeviceInfo) -> str:
    """What fits on a gauge: CPU brand strings lose their trademark noise."""
    if info.kind != "cpu":
        return info.name
    return re.sub(r"\s+", " ", _CPU_NOISE.sub("", info.name)).replace(" )", ")").strip()


def memory_text(used: int, total: int) -> str:
    """'20.6 / 24.0 GiB' (one unit when both are GiB), else '28 MiB / 512 MiB'."""
    u, t = format_bytes(used), format_bytes(total)
    if u.endswith(" GiB") and t.endswith(" GiB"):
        return f"{u[:-4]} / {t}"
    return f"{u} / {t}"


def tooltip(info: DeviceInfo) -> str:
    rows = [
        ("Device", info.name),
        ("Kind", _KIND.get(info.kind, info.kind)),
        ("Machine", info.machine),
    ]
    if info.llama_name:
        seen = info.llama_name + (f" ({info.llama_description})" if info.llama_description else "")
        rows.append(("llama.cpp", seen))
    elif info.kind != "cpu":
        rows.append(("llama.cpp", "does not list this device: it cannot hold layers"))
    if info.driver:
        rows.append(("Driver", info.driver))
    if info.pci_bus_id:
        rows.append(("PCI", info.pci_bus_id))
    if info.pcie_gen and info.pcie_width:
        rows.append(("PCIe link", f"Gen {info.pcie_gen} x{info.pcie_width}"))
    if info.memory_bandwidth:
        detail = ""
        if info.memory_clock_mhz and info.memory_bus_width:
            detail = f" ({info.memory_clock_mhz} MHz, {info.memory_bus_width}-bit)"
        rows.append(("Memory bandwidth", f"{info.memory_bandwidth / 1e9:.0f} GB/s peak{detail}"))
    elif info.memory_clock_mhz:
        rows.append(("Memory clock", f"{info.memory_clock_mhz} MHz (bus width not reported)"))
    if info.power_limit_w:
        rows.append(("Power limit", f"{info.power_limit_w:.0f} W"))
    if info.partial:
        rows.append(("Note", "partial: only what sysfs tells (no memory numbers)"))
    body = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


class DeviceGauge(QFrame):
    def __init__(self, info: DeviceInfo, parent: QWidget | None = None):
        super().__init__(parent)
        self.info = info
        self.sample: DeviceSample | None = None
        self.model_bytes = 0
        self.setObjectName("DeviceGauge")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setMinimumWidth(300)

        self.title = QLabel(f"<b>{display_name(info)}</b>")
        self.badge = QLabel(info.llama_name or ("" if info.kind == "cpu" else "not in llama.cpp"))
        self.badge.setObjectName("llamaName")
        self.bar = MemoryBar()
        self.memory = QLabel("waiting for a reading…")
        self.stats = QLabel("")
        self.history = HistoryLine()
        self.placement = QLabel("")
        self.placement.setObjectName("placement")
        self.placement.hide()
        self.model_share = QLabel("")
        self.model_share.setObjectName("modelShare")
        self.model_share.hide()
        self.problem = QLabel("")
        self.problem.setObjectName("problem")
        self.problem.setWordWrap(True)
        self.problem.hide()

        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.badge)
        numbers = QHBoxLayout()
        numbers.addWidget(self.memory, 1)
        numbers.addWidget(self.stats)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(3)
        lay.addLayout(top)
        lay.addWidget(self.bar)
        lay.addLayout(numbers)
        lay.addWidget(self.history)
        model_line = QHBoxLayout()
        model_line.addWidget(self.placement, 1)
        model_line.addWidget(self.model_share)
        lay.addLayout(model_line)
        lay.addWidget(self.problem)
        self.setToolTip(tooltip(info))
        self._style()

    @property
    def stale(self) -> bool:
        return self.sample is None or self.sample.stale

    def set_info(self, info: DeviceInfo) -> None:
        self.info = info
        self.setToolTip(tooltip(info))

    def update_sample(self, s: DeviceSample) -> None:
        self.sample = s
        total = s.memory_total or self.info.memory_total
        if total:
            self.bar.set_values(s.memory_used, total, self.model_bytes, s.stale)
            self.memory.setText(memory_text(s.memory_used, total))
            if not s.stale:
                self.history.add(s.time, s.memory_used / total, s.utilization)
        else:  # sysfs-only device: nothing to draw a bar or a history of
            self.bar.hide()
            self.history.hide()
            self.memory.setText(
                "memory not reported (shared with the system)"
                if self.info.kind == "igpu"
                else "memory not reported"
            )
        self.stats.setText("  ".join(s.readings()))
        if s.stale:
            self.problem.setText(f"stale: {s.problem}" if s.problem else "stale")
        self.problem.setVisible(s.stale)
        self._style()

    def set_placement(self, text: str) -> None:
        self.placement.setText(text)
        self.placement.setVisible(bool(text))

    def set_model_memory(self, n: int) -> None:
        self.model_bytes = n
        self.model_share.setText(f"model {format_bytes(n)}" if n else "")
        self.model_share.setVisible(bool(n))
        if self.sample is not None:
            self.update_sample(self.sample)

    def _style(self) -> None:
        level = self.bar.level if self.sample else "ok"
        key = (level, self.stale and self.sample is not None)
        if key == getattr(self, "_style_key", None):
            return  # restyling is the costly part of an update; only when it changes
        self._style_key = key
        border = {"ok": "#c9ced6", "near": "#d99a1e", "full": "#d0453a", "stale": "#b0b0b0"}[level]
        fg = "#8a8a8a" if self.stale and self.sample is not None else "#1d232b"
        self.setStyleSheet(
            f"#DeviceGauge {{ border: 1px solid {border}; border-radius: 6px;"
            f" background: #ffffff; }}"
            f" #DeviceGauge QLabel {{ color: {fg}; }}"
            " #DeviceGauge QLabel#llamaName { color: #5a6472; font-family: monospace; }"
            " #DeviceGauge QLabel#placement { color: #6c4fc4; font-weight: bold; }"
            " #DeviceGauge QLabel#modelShare { color: #6c4fc4; }"
            " #DeviceGauge QLabel#problem { color: #a33a30; }"
        )
