"""The About box and the first-start welcome, on the real llama.cpp device list (a child
process, as in the app), offscreen."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QMainWindow

from layerlab.core.build_info import Runtime, build_info
from layerlab.core.head import Head
from layerlab.core.settings import Settings
from layerlab.ui.about import AboutDialog
from layerlab.ui.app import add_help_menu, welcome_once
from layerlab.ui.welcome import DEMO, MODELS, WelcomeDialog, device_rows

pytestmark = pytest.mark.gui

# Devices as llama.cpp's ggml_lib reports them on a rig with two vendors' GPUs.
TWO_VENDORS = Runtime(
    backends=["CPU", "Vulkan", "CUDA"],
    devices=[
        {"name": "CUDA0", "description": "NVIDIA GeForce RTX 3090", "type": "gpu",
         "free": 23 << 30, "total": 24 << 30, "device_id": "0000:01:00.0"},
        {"name": "Vulkan0", "description": "AMD Radeon RX 7900 XTX (RADV NAVI31)", "type": "gpu",
         "free": 23 << 30, "total": 24 << 30, "device_id": "0000:03:00.0"},
        {"name": "CPU", "description": "AMD Ryzen 9 7950X", "type": "cpu",
         "free": 60 << 30, "total": 64 << 30, "device_id": ""},
    ],
)  # fmt: skip


def test_about_shows_versions_build_backends_and_the_real_devices(qtbot):
    about = AboutDialog()
    qtbot.addWidget(about)
    text = about.build.text()
    assert f"LayerLab {build_info().app}" in about.title.text()
    assert "llama.cpp</b> 0c1e570" in text and "llama-cpp-python 0.3.36" in text
    assert "RPC protocol</b> 7.0.0" in text
    assert "Backends</b> built in (CPU, RPC)" in text  # the development build here
    assert "Looking for devices" in about.devices.text()
    qtbot.waitUntil(lambda: not about.looking, timeout=60_000)
    shown = about.devices.text()
    assert about.runtime is not None and not about.runtime.problem
    assert "CPU: " in shown and "(CPU, " in shown  # llama.cpp's CPU device, with its memory
    assert "llama.cpp registered</b> RPC, CPU" in shown


def test_about_names_a_device_listing_that_failed(qtbot):
    about = AboutDialog(read=lambda: Runtime(problem="llama.cpp could not list its devices"))
    qtbot.addWidget(about)
    qtbot.waitUntil(lambda: not about.looking, timeout=10_000)
    assert "could not list its devices" in about.devices.text()


def test_the_help_menu_opens_the_about_box(qtbot):
    window = QMainWindow()
    qtbot.addWidget(window)
    add_help_menu(window)
    (help_menu,) = [a.menu() for a in window.menuBar().actions() if a.text() == "&Help"]
    (about_action,) = help_menu.actions()
    about_action.trigger()
    (about,) = window.findChildren(AboutDialog)
    assert about.isVisible()
    qtbot.waitUntil(lambda: not about.looking, timeout=60_000)
    about.reject()


def test_welcome_says_each_device_and_its_backend_in_words():
    rows = device_rows(TWO_VENDORS)
    assert rows == [
        ("NVIDIA GeForce RTX 3090", "CUDA (NVIDIA)"),
        ("AMD Radeon RX 7900 XTX (RADV NAVI31)", "Vulkan (any vendor's GPU driver)"),
        ("AMD Ryzen 9 7950X (processor)", "the processor"),
    ]


def test_welcome_on_this_machine_shows_the_cpu_and_says_no_gpu_was_found(qtbot):
    welcome = WelcomeDialog()
    qtbot.addWidget(welcome)
    qtbot.waitUntil(lambda: not welcome.looking, timeout=60_000)
    text = welcome.devices.text()
    assert "(processor)" in text and "runs on the processor" in text
    assert "No GPU was found" in text


def test_welcome_with_gpus_does_not_say_none_was_found(qtbot):
    welcome = WelcomeDialog(read=lambda: TWO_VENDORS)
    qtbot.addWidget(welcome)
    qtbot.waitUntil(lambda: not welcome.looking, timeout=10_000)
    text = welcome.devices.text()
    assert "RTX 3090" in text and "runs on CUDA (NVIDIA)" in text
    assert "No GPU was found" not in text


@pytest.mark.parametrize("button, choice", [("demo_button", DEMO), ("models_button", MODELS)])
def test_welcome_offers_the_demo_model_or_the_models_screen(qtbot, button, choice):
    welcome = WelcomeDialog(read=lambda: TWO_VENDORS)
    qtbot.addWidget(welcome)
    qtbot.waitUntil(lambda: not welcome.looking, timeout=10_000)
    with qtbot.waitSignal(welcome.chosen) as said:
        getattr(welcome, button).click()
    assert said.args == [choice] and welcome.result() == welcome.DialogCode.Accepted


class PagedWindow(QMainWindow):
    """Stands where MainWindow does for welcome_once: it has pages to show."""

    def __init__(self) -> None:
        super().__init__()
        self.pages_shown: list[str] = []

    def show_page(self, key: str) -> None:
        self.pages_shown.append(key)


def test_the_welcome_is_shown_once_and_remembered_in_the_settings(qtbot, tmp_path):
    path = tmp_path / "settings.json"
    head = Head(Settings(), path)
    try:
        window = PagedWindow()
        qtbot.addWidget(window)
        welcome_once(window, head)
        (welcome,) = window.findChildren(WelcomeDialog)
        qtbot.waitUntil(lambda: not welcome.looking, timeout=60_000)
        welcome.models_button.click()
        assert window.pages_shown == ["models"]
        assert Settings.load(path).welcomed is True
        assert Settings().welcomed is False  # a new person sees it
    finally:
        head.close()


def no_child_process() -> Runtime:
    raise OSError("the device listing child could not start")


@pytest.mark.parametrize("dialog", [AboutDialog, WelcomeDialog])
def test_both_screens_say_a_device_lookup_that_raised_in_words(qtbot, dialog):
    shown = dialog(read=no_child_process)
    qtbot.addWidget(shown)
    qtbot.waitUntil(lambda: not shown.looking, timeout=10_000)
    assert shown.runtime is not None and shown.runtime.problem.startswith("Could not ask")
    assert (
        "Could not ask llama.cpp for its devices: the device listing child could not start"
        in shown.devices.text()
    )


@pytest.mark.parametrize("dialog", [AboutDialog, WelcomeDialog])
def test_both_screens_say_when_llama_cpp_found_no_device(qtbot, dialog):
    shown = dialog(read=lambda: Runtime(backends=["CPU"], devices=[]))
    qtbot.addWidget(shown)
    qtbot.waitUntil(lambda: not shown.looking, timeout=10_000)
    assert "llama.cpp found no device here." in shown.devices.text()


@pytest.mark.parametrize("dialog", [AboutDialog, WelcomeDialog])
def test_both_screens_grow_to_fit_the_devices_that_arrive_after_they_show(qtbot, dialog):
    shown = dialog(read=lambda: TWO_VENDORS)
    qtbot.addWidget(shown)
    shown.show()  # laid out while still looking, as in the window's first start
    qtbot.waitUntil(lambda: not shown.looking, timeout=10_000)
    qtbot.wait(50)
    hint = shown.sizeHint()
    assert shown.height() >= hint.height() and shown.width() >= hint.width()
