"""The first start's welcome: the devices found here and the backend each one uses, and
two ways on: chat with the bundled demo model (it is loading already, offline), or find a
model on the Models screen. Shown once (Settings.welcomed)."""

from __future__ import annotations

import html
from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from layerlab.core.build_info import Runtime, backend_of, read_runtime
from layerlab.ui.about import DevicesDialog, app_icon, logo, no_device_list

DEMO = "demo"
MODELS = "models"

# What each ggml backend means to a person who has never heard of ggml.
BACKEND_WORDS = {
    "CPU": "the processor",
    "Vulkan": "Vulkan (any vendor's GPU driver)",
    "CUDA": "CUDA (NVIDIA)",
    "ROCm": "ROCm (AMD)",
    "RPC": "another machine over the network",
}


def device_rows(runtime: Runtime) -> list[tuple[str, str]]:
    """(what the device is, the backend it runs on, in words) per device llama.cpp found."""
    rows = []
    for d in runtime.devices:
        backend = backend_of(d["name"])
        what = d["description"] or d["name"]
        if d["type"] == "cpu":
            what = f"{what} (processor)"
        rows.append((what, BACKEND_WORDS.get(backend, backend)))
    return rows


class WelcomeDialog(DevicesDialog):
    chosen = Signal(str)  # DEMO or MODELS

    def __init__(self, parent: QWidget | None = None, read: Callable[[], Runtime] = read_runtime):
        super().__init__(parent)
        self.setWindowTitle("Welcome to LayerLab")
        self.setWindowIcon(app_icon())
        intro = QLabel(
            "<h2>Welcome to LayerLab</h2>"
            "LayerLab runs a language model on this machine's GPUs, and on other machines' "
            "GPUs in your house when you add them."
        )
        intro.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(logo(72), 0, Qt.AlignTop)
        top.addWidget(intro, 1)

        self.devices = QLabel("<b>Devices on this machine</b><br>Looking for devices…")
        self.devices.setWordWrap(True)
        self.devices.setTextFormat(Qt.RichText)
        self.next = QLabel(
            "A small demo model is included and is loading now, so you can chat straight "
            "away, offline. Bigger models are on the Models screen."
        )
        self.next.setWordWrap(True)

        self.demo_button = QPushButton("Chat with the demo model")
        self.demo_button.setDefault(True)
        self.models_button = QPushButton("Find a model…")
        self.demo_button.clicked.connect(lambda: self._choose(DEMO))
        self.models_button.clicked.connect(lambda: self._choose(MODELS))
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.models_button)
        buttons.addWidget(self.demo_button)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.devices)
        layout.addWidget(self.next)
        layout.addLayout(buttons)
        self.setMinimumWidth(600)

        self.choice = ""
        self.ask_for_devices("welcome-devices", read)

    def show_runtime(self, runtime: Runtime) -> None:
        body = no_device_list(runtime)
        if not body:
            body = (
                "<table cellspacing='4'>"
                + "".join(
                    f"<tr><td>{html.escape(what)}</td><td>&nbsp;runs on {html.escape(backend)}</td>"
                    "</tr>"
                    for what, backend in device_rows(runtime)
                )
                + "</table>"
            )
            if not any(d["type"] in ("gpu", "igpu") for d in runtime.devices):
                body += (
                    "<p>No GPU was found, so models run on the processor. A GPU needs its "
                    "driver (with Vulkan, or CUDA for NVIDIA) installed.</p>"
                )
        self.devices.setText(f"<b>Devices on this machine</b><br>{body}")

    def _choose(self, choice: str) -> None:
        self.choice = choice
        self.chosen.emit(choice)
        self.accept()
