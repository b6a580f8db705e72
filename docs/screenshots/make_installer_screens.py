"""Screenshots of the first-start welcome and the About box, on this machine's real
llama.cpp device list (and the welcome on a recorded two-vendor rig).

Run under Xvfb from the repository root, with the installers' llama.cpp (backend modules,
Vulkan on Mesa's CPU driver) from installers/build-bundle.sh's venv:
    GGML_VK_VISIBLE_DEVICES=0 PYTHONPATH=app xvfb-run -a -s "-screen 0 1280x800x24" \
        build/bundle-venv/bin/python docs/screenshots/make_installer_screens.py
PYTHONPATH=app shows the working tree's screens, not the copy installed in that venv (as old
as the last bundle build); the device-listing child inherits it, so both sides match.
(.venv/bin/python works too and shows the development build.)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtWidgets import QApplication

from layerlab.core.build_info import Runtime
from layerlab.ui.about import AboutDialog, app_icon
from layerlab.ui.welcome import WelcomeDialog

OUT = Path(__file__).parent

TWO_VENDORS = Runtime(
    backends=["CPU", "Vulkan", "CUDA", "RPC"],
    devices=[
        {"name": "CUDA0", "description": "NVIDIA GeForce RTX 3090", "type": "gpu",
         "free": 23 << 30, "total": 24 << 30, "device_id": "0000:01:00.0"},
        {"name": "Vulkan1", "description": "AMD Radeon RX 7900 XTX (RADV NAVI31)", "type": "gpu",
         "free": 23 << 30, "total": 24 << 30, "device_id": "0000:03:00.0"},
        {"name": "CPU", "description": "AMD Ryzen 9 7950X 16-Core Processor", "type": "cpu",
         "free": 60 << 30, "total": 64 << 30, "device_id": ""},
    ],
)  # fmt: skip


def settle(app: QApplication, dialog, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while dialog.looking or time.monotonic() < deadline - timeout + 0.5:
        if time.monotonic() > deadline:
            raise TimeoutError("the device listing did not come back")
        app.processEvents()
        time.sleep(0.02)
    for _ in range(20):  # the dialog sizes itself to the devices (as in the app)
        app.processEvents()
        time.sleep(0.02)


def shoot(app: QApplication, dialog, name: str) -> None:
    dialog.show()
    settle(app, dialog)
    dialog.grab().save(str(OUT / name))
    print(f"wrote {OUT / name}")
    dialog.done(0)


def main() -> int:
    app = QApplication(sys.argv)
    app.setWindowIcon(app_icon())
    shoot(app, WelcomeDialog(), "welcome.png")
    shoot(app, WelcomeDialog(read=lambda: TWO_VENDORS), "welcome-two-vendors.png")
    shoot(app, AboutDialog(), "about.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
