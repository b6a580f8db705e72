"""The chat store on real SQLite files: schema versions, the message tree, streaming writes
with readers, other processes, damaged and newer files, search, delete/undo, export/import."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from layerlab.core.chat.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    AnswerStats,
    ConversationSettings,
    ImportProblem,
    Sampling,
    Store,
    StoreReadOnly,
    migrate,
)


def _integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


# -- schema versions -------------------------------------------------------------------------
def _old_database(path: Path, version: int) -> None:
    """A database as LayerLab at `version` wrote it, with one exchange of two messages."""
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, version)
    conn.execute(
        "INSERT INTO conversations (id, title, created, updated) VALUES ('c1', 'Old', 1, 2)"
    )
    if version == 1:  # messages were a list, kept in time order
        conn.execute(
            "INSERT INTO messages (id, conversation_id, role, content, created, finish) "
            "VALUES ('m1', 'c1', 'user', 'Hello from v1', 1, ''), "
            "('m2', 'c1', 'assistant', 'Hi!', 2, 'stop')"
        )
    else:  # version 2: a tree
        conn.execute(
            "INSERT INTO messages (id, conversation_id, parent_id, role, content, created, finish)"
            " VALUES ('m1', 'c1', NULL, 'user', 'Hello from v2', 1, ''), "
            "('m2', 'c1', 'm1', 'assistant', 'Hi!', 2, 'stop')"
        )
        conn.execute("UPDATE conversations SET current_leaf = 'm2'")
    conn.close()


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
def test_every_earlier_schema_migrates_with_its_conversations(tmp_path, version):
    path = tmp_path / "old.sqlite3"
    _old_database(path, version)
    store = Store(path)
    try:
        assert store.schema_version == SCHEMA_VERSION and not store.read_only
        assert store.message == ""
        [c] = store.conversations()
        assert c.title == "Old" and c.current_leaf == "m2"
        shown = store.current_path("c1")
        assert [(m.role, m.content) for m in shown] == [
            ("user", f"Hello from v{version}"),
            ("assistant", "Hi!"),
        ]
        assert shown[0].finish == "stop"  # a person's message is finished by definition
        assert store.settings("c1") == ConversationSettings()
        # and what the new schema adds works on the old data
        alt = store.add_message("c1", "m1", "assistant", "Hello again")
        assert store.branch_position(alt.id) == (2, 2)
        store.finish_answer(alt.id, "stop", AnswerStats(tokens=3, ended="stop"))
        assert store.message_by_id(alt.id).stats.tokens == 3
    finally:
        store.close()
    assert _integrity(path) == "ok"


def test_a_new_database_runs_every_migration(store):
    assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    assert store.path.exists()
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_newer_schema_opens_read_only_with_a_message(tmp_path):
    path = tmp_path / "newer.sqlite3"
    store = Store(path)
    c = store.create_conversation("From the future")
    store.add_message(c.id, None, "user", "kept")
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = path.read_bytes()

    store = Store(path)
    try:
        assert store.read_only
        assert "newer LayerLab" in store.message and "read-only" in store.message
        assert [m.content for m in store.current_path(c.id)] == ["kept"]  # still readable
        with pytest.raises(StoreReadOnly, match="read-only"):
            store.add_message(c.id, None, "user", "no")
        with pytest.raises(StoreReadOnly):
            store.create_conversation()
    finally:
        store.close()
    assert path.read_bytes() == before
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


@pytest.mark.parametrize(
    "damage",
    [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 8000],
    ids=["garbage", "garbled-header"],
)
def test_a_damaged_file_is_set_aside_and_a_new_one_started(tmp_path, damage):
    path = tmp_path / "chats.sqlite3"
    path.write_bytes(damage)
    store = Store(path)
    try:
        assert "could not be read" in store.message and "kept as" in store.message
        kept = [p for p in tmp_path.iterdir() if re.search(r"\.damaged-[\d-]+$", p.name)]
        assert len(kept) == 1 and kept[0].read_bytes() == damage  # kept, byte for byte
        assert kept[0].name in store.message
        c = store.create_conversation()
        store.add_message(c.id, None, "user", "a fresh start")
        assert store.conversations()[0].title == "a fresh start"
    finally:
        store.close()
    assert _integrity(path) == "ok"


def test_a_truncated_database_is_set_aside(tmp_path):
    path = tmp_path / "chats.sqlite3"
    store = Store(path)
    c = store.create_conversation()
    for i in range(200):
        store.add_message(c.id, None, "user", f"message {i} " + "x" * 500)
    store.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a disk that filled up, a copy cut short
    for side in ("-wal", "-shm"):
        path.with_name(path.name + side).unlink(missing_ok=True)
    store = Store(path)
    try:
        assert "kept as" in store.message
        assert store.conversations() == []
    finally:
        store.close()


# -- the tree -----------------------------------------------------------------------------
def test_regenerate_and_edit_make_alternatives_and_flipping_moves_the_leaf(store):
    c = store.create_conversation()
    q = store.add_message(c.id, None, "user", "Q1")
    a1 = store.add_message(c.id, q.id, "assistant", "A1")
    q2 = store.add_message(c.id, a1.id, "user", "Q2")
    store.add_message(c.id, q2.id, "assistant", "A2")
    a1b = store.add_message(c.id, q.id, "assistant", "A1 again")  # regenerate
    assert [m.content for m in store.current_path(c.id)] == ["Q1", "A1 again"]
    assert store.branch_position(a1b.id) == (2, 2)
    # "<": back to the first answer, and to where that branch last ended
    back = store.switch_branch(a1b.id, -1)
    assert back == a1.id
    assert [m.content for m in store.current_path(c.id)] == ["Q1", "A1", "Q2", "A2"]
    # edit Q1: a sibling root
    q1b = store.add_message(c.id, None, "user", "Q1 edited")
    assert store.branch_position(q1b.id) == (2, 2)
    assert [m.content for m in store.current_path(c.id)] == ["Q1 edited"]
    store.switch_branch(q1b.id, -1)  # back down the first branch, along its newest answers
    assert [m.content for m in store.current_path(c.id)] == ["Q1", "A1 again"]
    assert store.switch_branch(q.id, -1) == q.id  # no further left


def test_delete_a_message_with_undo_and_purge(store):
    c = store.create_conversation()
    q = store.add_message(c.id, None, "user", "Q")
    a = store.add_message(c.id, q.id, "assistant", "A")
    b = store.add_message(c.id, q.id, "assistant", "B")
    store.delete_message(b.id)
    assert [m.content for m in store.current_path(c.id)] == ["Q", "A"]  # onto its sibling
    assert store.branch_position(a.id) == (1, 1)
    store.undo_delete_message(b.id)
    assert [m.content for m in store.current_path(c.id)] == ["Q", "B"]
    store.delete_message(q.id)  # and what follows it
    assert store.current_path(c.id) == []
    store.undo_delete_message(q.id)
    assert len(store.current_path(c.id)) == 2
    store.delete_message(a.id)
    assert store.purge(older_than_s=-1) == 1
    with pytest.raises(KeyError):
        store.message_by_id(a.id)


def test_delete_a_conversation_with_undo_and_purge(store):
    keep = store.create_conversation("keep")
    gone = store.create_conversation("gone")
    store.add_message(gone.id, None, "user", "bye")
    store.delete_conversation(gone.id)
    assert [c.title for c in store.conversations()] == ["keep"]
    assert store.search("bye") == []
    store.undo_delete_conversation(gone.id)
    assert [c.title for c in store.conversations()] == ["gone", "keep"]  # newest first
    store.delete_conversation(gone.id)
    assert store.purge(older_than_s=3600) == 0  # still within its undo time
    assert store.purge(older_than_s=-1) == 1
    assert [c.id for c in store.conversations(include_deleted=True)] == [keep.id]


def test_newest_first_rename_settings_and_search(store):
    a = store.create_conversation()
    store.add_message(a.id, None, "user", "How do I sort a list in Python?")
    time.sleep(0.01)
    b = store.create_conversation()
    store.add_message(b.id, None, "user", "Tell me about 100% cotton_shirts")
    assert [c.id for c in store.conversations()] == [b.id, a.id]
    assert store.conversation(a.id).title == "How do I sort a list in Python?"
    store.rename(a.id, "Sorting")
    assert store.conversations()[-1].title == "Sorting"  # renaming is not news
    assert [h.conversation.id for h in store.search("PYTHON")] == [a.id]
    assert [h.conversation.id for h in store.search("sorting")] == [a.id]  # the title
    assert [h.conversation.id for h in store.search("100%")] == [b.id]
    assert store.search("0_s") == [] and [h.conversation.id for h in store.search("n_s")] == [b.id]
    hit = store.search("sort a list")[0]
    assert "sort a list" in hit.excerpt
    s = ConversationSettings("Be brief.", Sampling("Creative", 1.0, 0.98, 100, 0.02, 1.1, 99, 7))
    store.set_settings(a.id, s)
    assert store.settings(a.id) == s


def test_export_and_import_round_trip_keeps_every_branch_settings_and_stats(store, tmp_path):
    c = store.create_conversation("Trip")
    store.set_settings(c.id, ConversationSettings("sys", Sampling(max_tokens=5, seed=3), "chatml"))
    q = store.add_message(c.id, None, "user", "Q")
    a = store.add_message(c.id, q.id, "assistant", "A <b>not html</b>")
    store.finish_answer(a.id, "length", AnswerStats(0.5, 100.0, 20.0, 9, 5, "length", "CPU"))
    store.add_message(c.id, q.id, "assistant", "B")
    store.switch_branch(store.current_path(c.id)[-1].id, -1)
    exported = store.export_json(c.id)
    (tmp_path / "x.json").write_text(json.dumps(exported))
    [new] = store.import_json(json.loads((tmp_path / "x.json").read_text()))
    assert new != c.id
    again = store.export_json(new)
    for key in ("title", "settings", "created"):
        assert again[key] == exported[key]
    strip = [
        {k: v for k, v in m.items() if k not in ("id", "parent_id")} for m in again["messages"]
    ]
    assert strip == [
        {k: v for k, v in m.items() if k not in ("id", "parent_id")} for m in exported["messages"]
    ]
    assert [m.content for m in store.current_path(new)] == ["Q", "A <b>not html</b>"]
    assert store.current_path(new)[-1].stats.tokens == 5
    md = store.export_markdown(new)
    assert "## You\n\nQ" in md and "A <b>not html</b>" in md and "5 tokens" in md
    everything = store.export_all()
    assert len(everything["conversations"]) == 2
    assert len(store.import_json(everything)) == 2
    with pytest.raises(ImportProblem, match="not a LayerLab chat export"):
        store.import_json({"messages": []})


def test_a_1_mb_message_and_odd_text_are_kept_exactly(store):
    c = store.create_conversation()
    big = ("<script>alert('x')</script> ünïcödé 🙂 \u200b " * 20000)[: 1 << 20]
    m = store.add_message(c.id, None, "user", big)
    assert store.message_by_id(m.id).content == big
    assert [h.conversation.id for h in store.search("🙂")] == [c.id]


# -- streaming writes ----------------------------------------------------------------------
def test_streamed_text_is_flushed_while_streaming_and_readers_never_wait(store, store_path):
    c = store.create_conversation()
    q = store.add_message(c.id, None, "user", "go")
    a = store.add_message(c.id, q.id, "assistant", "", finish="")
    writer = store.writer(a.id, interval_s=0.2)
    stop = threading.Event()
    written: list[str] = []

    def stream() -> None:
        i = 0
        while not stop.is_set():
            piece = f"tok{i} "
            writer.add(piece)
            written.append(piece)
            i += 1
            time.sleep(0.001)

    t = threading.Thread(target=stream)
    t.start()
    seen: list[str] = []
    reader = Store(store_path)  # another connection, as the window's second view or the CLI
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            seen.append(reader.message_by_id(a.id).content)
            time.sleep(0.05)
    finally:
        stop.set()
        t.join()
        writer.close()
    final = store.message_by_id(a.id).content
    assert final == "".join(written)
    grew = [s for s in seen if s]
    assert len(set(grew)) >= 3, "readers saw the answer grow while it streamed"
    assert all(final.startswith(s) for s in seen)  # every read is whole text, never torn
    assert writer.flushes >= 3
    reader.close()


def test_an_answer_left_unfinished_by_a_crash_is_marked_with_its_text(store_path):
    s = Store(store_path)
    c = s.create_conversation()
    q = s.add_message(c.id, None, "user", "go")
    a = s.add_message(c.id, q.id, "assistant", "half an ans", finish="")
    s.close()
    s = Store(store_path)
    assert s.recover_unfinished(stale_s=60) == 0  # it may be another process's, still writing
    with sqlite3.connect(store_path) as conn:
        conn.execute("UPDATE conversations SET updated = updated - 120")
    assert s.recover_unfinished(stale_s=60) == 1
    m = s.message_by_id(a.id)
    assert (m.content, m.finish) == ("half an ans", "error") and "cut off" in m.note
    s.close()


WRITER_CHILD = """
import sys, time
from layerlab.core.chat.store import Store
s = Store(sys.argv[1])
c = s.create_conversation("child")
parent = None
for i in range(int(sys.argv[2])):
    m = s.add_message(c.id, parent, "user" if i % 2 == 0 else "assistant", f"child {i}")
    parent = m.id
print(c.id, flush=True)
"""


def test_two_processes_write_one_database_at_once(store_path):
    """The window and `layerlab chat` open together: both write, nothing lost or torn."""
    here = Store(store_path)
    mine = here.create_conversation("parent")
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER_CHILD, str(store_path), "300"], stdout=subprocess.PIPE
    )
    parent = None
    for i in range(300):
        parent = here.add_message(mine.id, parent, "user", f"parent {i}").id
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    theirs = out.decode().strip()
    assert [m.content for m in here.current_path(mine.id)] == [f"parent {i}" for i in range(300)]
    assert [m.content for m in here.current_path(theirs)] == [f"child {i}" for i in range(300)]
    here.close()
    assert _integrity(store_path) == "ok"


def test_the_newest_messages_of_a_branch_are_read_with_their_positions(store):
    c = store.create_conversation()
    q = store.add_message(c.id, None, "user", "q")
    a1 = store.add_message(c.id, q.id, "assistant", "a1")
    a2 = store.add_message(c.id, q.id, "assistant", "a2")  # regenerated: "< 2/2 >"
    parent = a2.id
    for i in range(10):
        parent = store.add_message(c.id, parent, "user" if i % 2 == 0 else "assistant", str(i)).id
    full = store.current_path(c.id)
    rows, complete = store.path_tail(c.id, 100)
    assert complete and [m.id for m, _ in rows] == [m.id for m in full]
    assert [pos for _, pos in rows] == [store.branch_position(m.id) for m in full]
    assert dict((m.id, pos) for m, pos in rows)[a2.id] == (2, 2)
    rows, complete = store.path_tail(c.id, 4)
    assert not complete and [m.id for m, _ in rows] == [m.id for m in full[-4:]]
    store.switch_branch(a2.id, -1)
    rows, complete = store.path_tail(c.id, 100)
    assert complete and [m.id for m, _ in rows] == [q.id, a1.id]
    assert rows[1][1] == (1, 2)
