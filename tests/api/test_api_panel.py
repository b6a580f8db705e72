"""The window's "Let other apps use this model" switch, on a real head with the demo model:
the real `openai` client at the URL and key the panel shows, the same key rules as `serve`,
and the key kept out of plain files and logs."""

from __future__ import annotations

import logging
import socket
import stat
import time

import openai
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QGuiApplication

from layerlab.core.api_front import ApiFront, ApiKeyStore
from layerlab.core.engine.supervisor import Failed, Ready
from layerlab.core.head import Head
from layerlab.core.load_plan import LoadPlan
from layerlab.core.settings import Settings
from layerlab.ui.api.api_panel import ApiPanel
from tests.conftest import free_port_pair

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def loaded(demo_model, tmp_path_factory):
    """A real head with the demo model loaded, and everything it logged."""
    where = tmp_path_factory.mktemp("api-head")
    said: list[str] = []
    head = Head(
        Settings(n_ctx=1024),
        where / "settings.json",
        state_dir=where / "head",
        log=said.append,
    )
    head.load(LoadPlan(str(demo_model), n_ctx=1024, n_threads=2))
    deadline = time.monotonic() + 120
    while not isinstance(head.state, Ready | Failed) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert isinstance(head.state, Ready), head.state
    yield head, where, said
    head.close()


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def click_switch(qtbot, panel: ApiPanel) -> None:
    """A click on the switch's box (its middle may be empty space past the words)."""
    box = QPoint(8, panel.switch.height() // 2)
    qtbot.mouseClick(panel.switch, Qt.MouseButton.LeftButton, pos=box)


def test_the_switch_opens_the_api_to_the_openai_client_and_closes_it(qtbot, loaded):
    head, _, _ = loaded
    panel = ApiPanel(head)
    qtbot.addWidget(panel)
    panel.show()
    port = free_port_pair()
    panel.port.setValue(port)
    assert not panel.switch.isChecked() and not listening(port)  # off until turned on
    assert not panel.paste_box.isVisible()

    click_switch(qtbot, panel)
    qtbot.waitUntil(lambda: head.api.status.on and panel.paste_box.isVisible(), timeout=20_000)
    assert panel.url.text() == f"http://127.0.0.1:{port}/v1"
    assert panel.only_here.isChecked() and "from this computer" in panel.status.text()
    qtbot.mouseClick(panel.copy_key, Qt.MouseButton.LeftButton)
    key = QGuiApplication.clipboard().text()
    qtbot.mouseClick(panel.copy_url, Qt.MouseButton.LeftButton)
    url = QGuiApplication.clipboard().text()
    assert key == panel.key.text() and len(key) >= 24 and url == panel.url.text()
    assert f"base_url=&quot;{url}&quot;" in panel.works_with.text()  # rich text
    for app in ("Open WebUI", "Continue", "SillyTavern", "openai"):
        assert app in panel.works_with.text()

    with openai.OpenAI(base_url=url, api_key=key, max_retries=0) as client:
        model = client.models.list().data[0].id
        answer = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0
        )
    assert answer.choices[0].message.content and answer.usage.completion_tokens == 4
    with (
        openai.OpenAI(base_url=url, api_key="wrong", max_retries=0) as stranger,
        pytest.raises(openai.AuthenticationError),
    ):
        stranger.models.list()

    click_switch(qtbot, panel)
    qtbot.waitUntil(lambda: not head.api.status.on and panel.switch.isEnabled(), timeout=20_000)
    assert not listening(port) and not panel.paste_box.isVisible()
    assert "Off" in panel.status.text()


def test_a_network_address_without_a_key_is_refused_in_words(loaded):
    head, _, _ = loaded
    front = ApiFront(head, ApiKeyStore(use_keyring=False))  # its own: the head's stays off
    port = free_port_pair()
    s = front.start(lan=True, port=port, key="")
    assert not s.on and not listening(port)
    assert "network" in s.problem and "API key" in s.problem
    # the same words as `serve` (one rule for both)
    from layerlab.core.serve import bind_problem

    assert bind_problem("0.0.0.0", port, "") == s.problem
    assert bind_problem("127.0.0.1", port, "") == ""


def test_a_port_in_use_is_said_in_words(loaded):
    head, _, _ = loaded
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        s = head.api.start(port=port)
    assert not s.on and f"Port {port} is already in use" in s.problem


def test_the_key_is_kept_0600_and_never_in_settings_or_the_logs(loaded, caplog):
    head, where, said = loaded
    caplog.set_level(logging.DEBUG)
    port = free_port_pair()
    first = head.api.start(port=port)
    try:
        assert first.on and first.key
        kept = where / "head" / "api-key"
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        assert kept.read_text().strip() == first.key
        with openai.OpenAI(base_url=first.url, api_key=first.key, max_retries=0) as client:
            client.models.list()
        again = head.api.start(port=port)  # a restart keeps the key: pasted apps go on working
        assert again.on and again.key == first.key
        # a new head on the same state finds the same key
        assert ApiKeyStore(where / "head", use_keyring=False).key() == first.key
    finally:
        head.api.stop()
    head.save_settings()
    assert first.key not in (where / "settings.json").read_text()
    assert any("the API is open" in line for line in said)
    assert not [line for line in said if first.key in line]
    assert first.key not in caplog.text


def test_a_key_that_cannot_be_kept_serves_this_run_and_says_so(qtbot, loaded, tmp_path):
    head, _, _ = loaded
    not_a_folder = tmp_path / "config"
    not_a_folder.write_text("a file where the config folder should be")
    front = ApiFront(head, ApiKeyStore(not_a_folder, use_keyring=False))
    port = free_port_pair()
    s = front.start(port=port)
    try:
        # loopback still opens, with a key for this run, and the person is told why it
        # will change (their apps will need the new one after a restart)
        assert s.on and len(s.key) >= 24 and listening(port)
        assert "could not keep an API key" in s.problem and "until LayerLab closes" in s.problem
        with openai.OpenAI(base_url=s.url, api_key=s.key, max_retries=0) as client:
            client.models.list()
        panel = ApiPanel(head)
        qtbot.addWidget(panel)
        panel._show(s)
        assert panel.status.text().startswith("On: ") and s.problem in panel.status.text()
    finally:
        front.stop()
