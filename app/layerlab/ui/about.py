"""The About box: the app's version, the llama.cpp build and RPC protocol, the backend
modules this LayerLab carries, and the devices llama.cpp finds here (asked in a child
process, off the GUI thread: the window never loads llama.cpp)."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from layerlab.core.build_info import BuildInfo, Runtime, build_info, read_runtime
from layerlab.ui.wiring.background import BackgroundLane

ICON = Path(__file__).resolve().parent.parent / "resources" / "layerlab.png"


def app_icon() -> QIcon:
    return QIcon(str(ICON)) if ICON.is_file() else QIcon()


def logo(size: int) -> QLabel:
    """The app's icon, `size` pixels square, for a dialog's top left."""
    label = QLabel()
    label.setPixmap(
        QPixmap(str(ICON)).scaled(size, size, Qt.KeepAspectRatio, Qt.SmoothTransformation)
    )
    return label


def no_device_list(runtime: Runtime) -> str:
    """What stands where the device list would (html): why llama.cpp could not list its
    devices, or that it found none; "" when there are devices to list."""
    if runtime.problem:
        return html.escape(runtime.problem)
    if not runtime.devices:
        return "llama.cpp found no device here."
    return ""


def devices_html(runtime: Runtime) -> str:
    """The devices llama.cpp found, one per line, with the backend each runs on."""
    return no_device_list(runtime) or "<br>".join(
        html.escape(line) for line in runtime.device_lines()
    )


class DevicesDialog(QDialog):
    """A dialog that shows the devices llama.cpp finds here: asked in a child process, off
    the GUI thread (the window never loads llama.cpp). The About box and the welcome."""

    def ask_for_devices(self, lane_name: str, read: Callable[[], Runtime]) -> None:
        self.runtime: Runtime | None = None
        self._lane = BackgroundLane(lane_name, self)
        self._lane.submit(read, self._got_runtime, self._failed)

    @property
    def looking(self) -> bool:
        return self._lane.busy

    def _got_runtime(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.show_runtime(runtime)
        # The devices arrive after the dialog was laid out for "looking…": grow to fit them,
        # or their lines are drawn over the text below (seen in the window's first start).
        self.adjustSize()

    def show_runtime(self, runtime: Runtime) -> None:
        raise NotImplementedError

    def _failed(self, error: Exception) -> None:
        self._got_runtime(Runtime(problem=f"Could not ask llama.cpp for its devices: {error}"))

    def done(self, result: int) -> None:
        self._lane.close()
        super().done(result)


class AboutDialog(DevicesDialog):
    def __init__(
        self,
        parent: QWidget | None = None,
        info: BuildInfo | None = None,
        read: Callable[[], Runtime] = read_runtime,
    ):
        super().__init__(parent)
        self.setWindowTitle("About LayerLab")
        self.setWindowIcon(app_icon())
        self.info = info or build_info()
        i = self.info

        self.title = title = QLabel(
            f"<h2>LayerLab {html.escape(i.app)}</h2>"
            "Run large language models across every GPU in your home lab."
        )
        title.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(logo(96))
        top.addWidget(title, 1)

        self.build = QLabel(
            f"<b>llama.cpp</b> {html.escape(i.llama_cpp)} "
            f"(llama-cpp-python {html.escape(i.llama_cpp_python)})<br>"
            f"<b>RPC protocol</b> {html.escape(i.rpc_protocol)}<br>"
            f"<b>Backends</b> {html.escape(i.backends_text())}"
        )
        self.build.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.devices = QLabel("<b>Devices</b><br>Looking for devices…")
        self.devices.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.devices.setWordWrap(True)
        note = QLabel("Apache-2.0. No telemetry: nothing leaves this machine unless you share it.")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.build)
        layout.addWidget(self.devices)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.setMinimumWidth(480)

        self.ask_for_devices("about-devices", read)

    def show_runtime(self, runtime: Runtime) -> None:
        found = ", ".join(runtime.backends) if runtime.backends else ""
        registered = f"<br><b>llama.cpp registered</b> {html.escape(found)}" if found else ""
        self.devices.setText(f"<b>Devices</b><br>{devices_html(runtime)}{registered}")
