"""The Models screen offscreen, on a real head whose hub talks to the stand-in: search ->
quants with fit badges -> download with progress -> library -> Load emits that path."""

from __future__ import annotations

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
