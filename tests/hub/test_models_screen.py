"""The Models screen offscreen, on a real head whose hub talks to the stand-in: search ->
quants with fit badges -> download with progress -> library -> Load emits that path."""

from __future__ import annotations

import time

import pytest

from layerlab.core.head import Head
from layerlab.core.hub.hub import ModelHub
from layerlab.ui.models import ModelsScreen
from tests.hub.conftest import REPO, rig_cluster

pytestmark = pytest.mark.gui


@pytest.fixture
def head(tmp_path, config):
    h = Head(persist=False, state_dir=tmp_path / "head")
    h.models = ModelHub(config, cluster=rig_cluster)  # this test's hub: the stand-in, a rig
    yield h
    h.close()


def test_search_quants_badges_download_library_load(qtbot, head, standin):
    standin.repos[REPO].rate = 3_000_000  # slow enough to watch the bar move
    screen = ModelsScreen(head)
    qtbot.addWidget(screen)
    screen.show()
    assert standin.requests == []  # opening the screen asks nobody

    screen.query.setText("tiny")
    screen.search_button.click()
    qtbot.waitUntil(lambda: screen.results.rowCount() >= 1, timeout=10_000)
    assert screen.results.item(0, 0).text() == REPO
    assert screen.results.item(0, 1).text() == "1,200"

    screen.results.selectRow(0)
    qtbot.waitUntil(lambda: len(screen.quants) == 4, timeout=10_000)
    qtbot.waitUntil(lambda: screen._recommended != "", timeout=2_000)  # badges within 2 s
    assert all(screen.badge_text(q.tag) == "fits on GPUs" for q in screen.quants)
    assert screen._recommended == "F16"

    row = next(i for i, q in enumerate(screen.quants) if q.tag == "F16")
    screen.quants_table.selectRow(row)
    assert screen.download_button.isEnabled()
    screen.download_button.click()
    qtbot.waitUntil(lambda: bool(screen.downloads.rows), timeout=10_000)
    (dl_row,) = screen.downloads.rows.values()
    # mid-file: the bar, bytes, speed and time left
    qtbot.waitUntil(lambda: "/s" in dl_row.text.text(), timeout=10_000)
    assert 0 < dl_row.bar.value() < 1000
    assert " of 5 MiB" in dl_row.text.text() and " left" in dl_row.text.text()
    qtbot.waitUntil(lambda: dl_row.bar.value() == 1000, timeout=30_000)

    screen.tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: screen.library_table.rowCount() == 1, timeout=10_000)
    assert screen.library_table.item(0, 0).text() == f"{REPO} · F16"
    assert "llama" in screen.library_table.item(0, 3).text()
    screen.library_table.selectRow(0)
    with qtbot.waitSignal(screen.loadRequested, timeout=2_000) as sig:
        screen.load_button.click()
    assert sig.args[0] == screen.library[0].path
    assert sig.args[0].endswith("Tiny-F16.gguf")

    screen.delete_selected(confirm=False)
    qtbot.waitUntil(lambda: screen.library_table.rowCount() == 0, timeout=10_000)
    screen.close()


def test_a_fault_is_words_on_the_screen(qtbot, head):
    screen = ModelsScreen(head)
    qtbot.addWidget(screen)
    screen.open_repo("tester/No-GGUF-Here")
    qtbot.waitUntil(lambda: "holds no GGUF" in screen.status.text(), timeout=10_000)
    screen.close()


@pytest.fixture
def file_token(head, config):
    """The token in its 0600 file (this test must not write the tester's real keyring)."""
    from layerlab.core.hub.token import TokenStore

    head.models.token = TokenStore(config.state_dir, use_keyring=False)
    return head.models.token


def test_a_pasted_token_opens_a_gated_repo_and_is_kept_only_in_its_file(
    qtbot, head, standin, file_token, caplog
):
    import logging

    caplog.set_level(logging.DEBUG)
    screen = ModelsScreen(head)
    qtbot.addWidget(screen)
    qtbot.waitUntil(lambda: "No token" in screen.token_state.text(), timeout=5_000)
    screen.open_repo("tester/Gated-Tiny-GGUF")
    qtbot.waitUntil(lambda: "gated or private" in screen.status.text(), timeout=10_000)

    screen.tabs.setCurrentIndex(2)
    screen.token_edit.setText("hf_good")
    screen.save_token_button.click()
    assert screen.token_edit.text() == ""  # it does not stay on screen
    qtbot.waitUntil(lambda: "kept in" in screen.token_state.text(), timeout=5_000)
    assert str(file_token.file) in screen.token_state.text()
    assert file_token.file.read_text().strip() == "hf_good"
    assert file_token.file.stat().st_mode & 0o777 == 0o600
    screen.open_repo("tester/Gated-Tiny-GGUF")
    qtbot.waitUntil(lambda: len(screen.quants) == 4, timeout=10_000)
    saved = [p for p in head.models.config.state_dir.rglob("*") if p.is_file()]
    assert all("hf_good" not in p.read_text() for p in saved if p != file_token.file)
    assert "hf_good" not in caplog.text and "hf_good" not in screen.status.text()

    screen.forget_token_button.click()
    qtbot.waitUntil(lambda: "No token" in screen.token_state.text(), timeout=5_000)
    assert not file_token.file.exists()
    screen.close()


def test_the_offline_switch_calls_nobody_and_is_kept(qtbot, head, standin):
    screen = ModelsScreen(head)
    qtbot.addWidget(screen)
    qtbot.waitUntil(lambda: hasattr(screen, "settings"), timeout=5_000)
    screen.offline_box.setChecked(True)
    qtbot.waitUntil(lambda: head.models.offline, timeout=5_000)
    qtbot.waitUntil(lambda: not screen.search_button.isEnabled(), timeout=5_000)
    screen.query.setText("tiny")
    screen.search()  # Enter in the box
    qtbot.waitUntil(lambda: "offline" in screen.status.text().lower(), timeout=5_000)
    screen.open_repo(REPO)
    qtbot.waitUntil(lambda: "offline" in screen.status.text().lower(), timeout=5_000)
    assert standin.requests == []
    assert head.models.config.choices_file.exists()  # the next start is offline too

    screen.offline_box.setChecked(False)
    qtbot.waitUntil(lambda: screen.search_button.isEnabled(), timeout=5_000)
    screen.search_button.click()
    qtbot.waitUntil(lambda: screen.results.rowCount() >= 1, timeout=10_000)
    screen.close()


def test_a_mirror_address_is_used_and_a_bad_one_is_words(qtbot, head, standin):
    head.models.config.endpoint = "http://127.0.0.1:9"  # nothing answers there
    screen = ModelsScreen(head)
    qtbot.addWidget(screen)
    qtbot.waitUntil(lambda: screen.endpoint_edit.text() == "http://127.0.0.1:9", timeout=5_000)
    screen.endpoint_edit.setText("hub.example.org")
    screen.endpoint_button.click()
    qtbot.waitUntil(lambda: "not a web address" in screen.status.text(), timeout=5_000)
    assert head.models.config.endpoint == "http://127.0.0.1:9"

    screen.endpoint_edit.setText(standin.endpoint + "/")
    screen.endpoint_button.click()
    qtbot.waitUntil(lambda: head.models.config.endpoint == standin.endpoint, timeout=5_000)
    screen.query.setText("tiny")
    screen.search_button.click()
    qtbot.waitUntil(lambda: screen.results.rowCount() >= 1, timeout=10_000)
    assert any(p == "/api/models" for _, p in standin.requests)
    screen.close()


def test_a_download_left_unfinished_continues_when_the_screen_opens(qtbot, head, standin):
    standin.repos[REPO].rate = 2_000_000
    hub = head.models
    item = hub.pull(f"{REPO}:F16")
    deadline = time.monotonic() + 20
    while hub.downloads.get(item.id).done_bytes < 1_000_000:
        assert time.monotonic() < deadline
        qtbot.wait(20)
    hub.close()  # LayerLab quits mid-file
    standin.repos[REPO].rate = 3_000_000
    screen = ModelsScreen(head)  # the next start
    qtbot.addWidget(screen)
    qtbot.waitUntil(lambda: bool(screen.downloads.rows), timeout=10_000)
    (row,) = screen.downloads.rows.values()
    qtbot.waitUntil(lambda: row.bar.value() == 1000, timeout=30_000)  # nobody pressed Resume
    qtbot.waitUntil(lambda: "in the Library" in screen.status.text(), timeout=5_000)
    gets = [r for f, r in standin.ranges if f == "Tiny-F16.gguf"]
    assert gets[0] == "" and gets[-1].startswith("bytes=") and int(gets[-1][6:-1]) >= 1_000_000
    screen.close()
