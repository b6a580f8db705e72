"""Kill -9 of the real window while it streams an answer: the store is valid and keeps all
the text up to the last flush (at most the last second is lost)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from layerlab.core.chat.store import Store

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[2]


def test_kill_9_of_the_window_mid_answer_keeps_the_text_up_to_the_last_flush(tmp_path):
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    window = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.drive_window",
            "Tell me a very long story about a dragon and a knight.",
            "2000",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    printed: list[tuple[float, bytes]] = []

    def read() -> None:
        while chunk := os.read(window.stdout.fileno(), 4096):
            printed.append((time.monotonic(), chunk))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        deadline = time.monotonic() + 150
        while sum(len(c) for _, c in printed) < 600 and time.monotonic() < deadline:
            assert window.poll() is None, "the window closed before the kill"
            time.sleep(0.05)
        assert sum(len(c) for _, c in printed) >= 600, "the window never streamed an answer"
        window.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        window.wait(10)
    finally:
        if window.poll() is None:
            window.kill()
            window.wait(10)
        reader.join(10)
        window.stdout.close()
    assert window.returncode == -signal.SIGKILL

    text = b"".join(c for _, c in printed).decode("utf-8", "replace")
    last_second = b"".join(c for t, c in printed if t > killed_at - 1.0).decode("utf-8", "replace")
    db = tmp_path / "data" / "layerlab" / "chats.sqlite3"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = Store(db)
    try:
        (conversation,) = store.conversations()
        question, answer = store.current_path(conversation.id)
        assert question.content.startswith("Tell me a very long story")
        assert answer.role == "assistant" and answer.finish == ""  # cut, not finished
        assert text.startswith(answer.content)
        lost = len(text) - len(answer.content)
        assert lost <= len(last_second), "at most the last second of the answer is lost"
        assert len(answer.content) > 300
    finally:
        store.close()
