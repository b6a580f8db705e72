"""`layerlab chat` as a person runs it: real processes, the real engine, one shared store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from layerlab.core.chat.store import Store


def _cli(store: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "layerlab.cli.main", "chat", "--store", str(store), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_one_message_then_go_on_list_export_and_import(tmp_path):
    db = tmp_path / "chats.sqlite3"
    first = _cli(db, "-m", "Name a fruit.", "--temperature", "0", "--max-tokens", "12")
    assert first.returncode == 0, first.stderr
    cid = first.stderr.strip().splitlines()[-1].split()[-1]
    assert "tok/s" in first.stderr and " tokens · " in first.stderr and "on CPU" in first.stderr
    answer = first.stdout.strip()
    assert answer
    second = _cli(db, "-m", "And a vegetable?", "--conversation", cid)
    assert second.returncode == 0, second.stderr

    listed = _cli(db, "--list")
    assert listed.returncode == 0 and cid in listed.stdout and "Name a fruit." in listed.stdout
    md = _cli(db, "--export", cid).stdout
    assert md.index("Name a fruit.") < md.index(answer) < md.index("And a vegetable?")
    exported = _cli(db, "--export", cid, "--format", "json").stdout
    (tmp_path / "c.json").write_text(exported)
    imported = _cli(db, "--import", str(tmp_path / "c.json"))
    assert imported.returncode == 0, imported.stderr
    new = imported.stdout.strip()
    assert new != cid
    again = json.loads(_cli(db, "--export", new, "--format", "json").stdout)
    assert [m["content"] for m in again["messages"]] == [
        m["content"] for m in json.loads(exported)["messages"]
    ]
    everything = json.loads(_cli(db, "--export-all").stdout)
    assert len(everything["conversations"]) == 2

    bad = _cli(db, "--export", "nope")
    assert bad.returncode == 1 and "no conversation nope" in bad.stderr
    assert "Traceback" not in bad.stderr
    (tmp_path / "junk.json").write_text("{not json")
    junk = _cli(db, "--import", str(tmp_path / "junk.json"))
    assert (
        junk.returncode == 1 and "Could not read" in junk.stderr and "Traceback" not in junk.stderr
    )


def test_kill_9_mid_answer_leaves_a_valid_database_with_the_text_up_to_the_last_flush(tmp_path):
    """While `layerlab chat -m` streams, this process writes to the same database too (the
    window and the terminal open at once); then the child is killed with signal 9."""
    db = tmp_path / "chats.sqlite3"
    here = Store(db)
    mine = here.create_conversation("the window's")
    q = here.add_message(mine.id, None, "user", "window question")
    a = here.add_message(mine.id, q.id, "assistant", "", finish="")
    writer = here.writer(a.id)
    stop = threading.Event()

    def window_streams() -> None:
        while not stop.is_set():
            writer.add("w ")
            time.sleep(0.002)

    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "layerlab.cli.main",
            "chat",
            "--store",
            str(db),
            "-m",
            "Tell me a very long story about a dragon and a knight.",
            "--max-tokens",
            "2000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    printed: list[tuple[float, bytes]] = []

    def read() -> None:
        while chunk := os.read(child.stdout.fileno(), 4096):
            printed.append((time.monotonic(), chunk))

    reader = threading.Thread(target=read)
    reader.start()
    streamer = threading.Thread(target=window_streams)
    streamer.start()
    try:
        deadline = time.monotonic() + 120
        while sum(len(c) for _, c in printed) < 600 and time.monotonic() < deadline:
            assert child.poll() is None, "the answer ended before the kill"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        child.wait(10)
        reader.join(10)
        child.stdout.close()
    finally:
        stop.set()
        streamer.join()
        writer.close()
    assert child.returncode == -signal.SIGKILL

    text = b"".join(c for _, c in printed).decode("utf-8", "replace")
    last_second = b"".join(c for t, c in printed if t > killed_at - 1.0).decode("utf-8", "replace")
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    theirs = [c for c in here.conversations() if c.id != mine.id]
    assert len(theirs) == 1
    answer = here.current_path(theirs[0].id)[-1]
    assert answer.role == "assistant" and answer.finish == ""  # cut, not finished
    assert text.startswith(answer.content)
    lost = len(text) - len(answer.content)
    assert lost <= len(last_second), "at most the last second of the answer is lost"
    assert len(answer.content) > 300
    # the window's answer, written all along, is whole
    assert set(here.message_by_id(a.id).content.split()) == {"w"}
    here.close()
    # and opening it again later marks the cut answer, keeping its text
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE conversations SET updated = updated - 60")
    listed = _cli(db, "--list")
    assert listed.returncode == 0
    s = Store(db)
    s.recover_unfinished()
    m = s.message_by_id(answer.id)
    assert m.finish == "error" and "cut off" in m.note and m.content == answer.content
    s.close()
