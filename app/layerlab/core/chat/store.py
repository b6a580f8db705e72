"""Conversations kept in SQLite: a tree of messages per conversation, settings, answer stats.

stdlib sqlite3 in WAL mode (readers never wait for the writer, and the window and `layerlab
chat` may have it open at once), foreign keys on, the schema versioned by `user_version` with a
migration from every earlier version. Messages form a tree like Open WebUI's: each has a parent,
Regenerate and Edit add a sibling, and the conversation remembers its current leaf; the path
from the root to that leaf is what is shown and sent.

Two things are never allowed to cost a person their chats:
- a database written by a newer LayerLab opens READ-ONLY, with a message (nothing is
  migrated down or overwritten);
- a file that is not a readable database is renamed aside (kept, never deleted) and a new one
  started, with a message.
An answer being streamed is written as it streams (AnswerWriter): batched, and at least once a
second, so a kill -9 loses at most the last second of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

FLUSH_INTERVAL_S = 0.5  # an answer's new text reaches the file at least this often (<= 1 s)
BUSY_TIMEOUT_MS = 5000  # another process writing: wait this long before giving up
PURGE_AFTER_S = 7 * 24 * 3600  # deleted conversations and messages are kept this long for undo
EXPORT_FORMAT = "layerlab-chat"  # the JSON export's "format" field; import checks it


def default_path() -> Path:
    return Path(platformdirs.user_data_dir("layerlab")) / "chats.sqlite3"


class StoreReadOnly(RuntimeError):
    """The store was opened read-only (newer schema); the message says why, in words."""


class ImportProblem(ValueError):
    """A file given to import is not a LayerLab chat export; the message says what is wrong."""


# -- what is stored -----------------------------------------------------------------------

# How an answer ended. "" while it is being written (or when a crash cut it: see
# Store.recover_unfinished).
ENDINGS = ("stop", "length", "stopped", "error")


@dataclass(frozen=True)
class Sampling:
    """Sampling settings per conversation: a preset's name plus the details behind it."""

    preset: str = "Balanced"
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    max_tokens: int = 1024
    seed: int | None = None

    def params(self) -> dict:
        """As the engine's API names them."""
        out = asdict(self)
        out.pop("preset")
        if out["seed"] is None:
            out.pop("seed")
        return out


PRESETS: dict[str, Sampling] = {
    "Precise": Sampling("Precise", 0.2, 0.9, 40, 0.05, 1.1, 1024),
    "Balanced": Sampling("Balanced", 0.7, 0.95, 40, 0.05, 1.0, 1024),
    "Creative": Sampling("Creative", 1.0, 0.98, 100, 0.02, 1.0, 1024),
}


@dataclass(frozen=True)
class ConversationSettings:
    system_prompt: str = ""
    sampling: Sampling = field(default_factory=Sampling)
    # For a model whose GGUF has no chat template: the template the person picked, "plain"
    # for plain completion, "" when the model's own template is used.
    template: str = ""
    # The person's overflow choice: send only the newest turns that fit the context.
    drop_oldest: bool = False


@dataclass(frozen=True)
class AnswerStats:
    ttft_s: float | None = None
    prompt_tps: float | None = None
    gen_tps: float | None = None
    prompt_tokens: int | None = None
    tokens: int | None = None
    ended: str = ""  # one of ENDINGS
    ran_on: str = ""  # devices / workers, as the placement line says them
    model: str = ""

    def line(self) -> str:
        """One line for under the answer: '0.21 s to first token · 95 tok/s prompt · ...'."""
        parts = []
        if self.ttft_s is not None:
            parts.append(f"{self.ttft_s:.2f} s to first token")
        if self.prompt_tps:
            parts.append(f"{self.prompt_tps:.0f} tok/s prompt")
        if self.gen_tps:
            parts.append(f"{self.gen_tps:.1f} tok/s")
        if self.tokens is not None:
            parts.append(f"{self.tokens} tokens")
        if self.ended:
            parts.append(self.ended)
        if self.ran_on:
            parts.append(f"on {self.ran_on}")
        return " · ".join(parts)


@dataclass(frozen=True)
class Message:
    id: str
    conversation_id: str
    parent_id: str | None
    role: str  # system | user | assistant
    content: str
    created: float
    finish: str = ""  # how an answer ended ("" while streaming); "stop" for a person's message
    note: str = ""  # said under it: "cut off: the worker at ... was lost"
    stats: AnswerStats | None = None


@dataclass(frozen=True)
class ConversationInfo:
    id: str
    title: str
    created: float
    updated: float
    current_leaf: str | None
    deleted: bool = False


@dataclass(frozen=True)
class SearchHit:
    conversation: ConversationInfo
    message_id: str | None  # None when the title matched
    excerpt: str


def new_id() -> str:
    return uuid.uuid4().hex[:16]


# -- the schema, version by version ----------------------------------------------------------
# MIGRATIONS[n] takes a database from version n to n + 1. A database at any earlier version
# opens at the latest; a new one runs them all. Never edit a step once released: add one.

_V1 = """
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    finish TEXT NOT NULL DEFAULT ''
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, created);
"""

# v2: messages become a tree (parent, current leaf); version 1's messages were a list, so each
# one's parent is the message before it and the leaf is the last.
_V2 = """
ALTER TABLE messages ADD COLUMN parent_id TEXT REFERENCES messages(id) ON DELETE CASCADE;
ALTER TABLE conversations ADD COLUMN current_leaf TEXT;
UPDATE messages SET parent_id = (
    SELECT p.id FROM messages p
    WHERE p.conversation_id = messages.conversation_id
      AND (p.created < messages.created
           OR (p.created = messages.created AND p.rowid < messages.rowid))
    ORDER BY p.created DESC, p.rowid DESC LIMIT 1
);
UPDATE conversations SET current_leaf = (
    SELECT m.id FROM messages m WHERE m.conversation_id = conversations.id
    ORDER BY m.created DESC, m.rowid DESC LIMIT 1
);
CREATE INDEX messages_by_parent ON messages(parent_id);
"""

# v3: settings per conversation, stats per answer, notes, soft delete (undo).
_V3 = """
CREATE TABLE conversation_settings (
    conversation_id TEXT PRIMARY KEY REFERENCES conversations(id) ON DELETE CASCADE,
    system_prompt TEXT NOT NULL DEFAULT '',
    preset TEXT NOT NULL DEFAULT 'Balanced',
    temperature REAL NOT NULL DEFAULT 0.7,
    top_p REAL NOT NULL DEFAULT 0.95,
    top_k INTEGER NOT NULL DEFAULT 40,
    min_p REAL NOT NULL DEFAULT 0.05,
    repeat_penalty REAL NOT NULL DEFAULT 1.0,
    max_tokens INTEGER NOT NULL DEFAULT 1024,
    seed INTEGER,
    template TEXT NOT NULL DEFAULT '',
    drop_oldest INTEGER NOT NULL DEFAULT 0
);
INSERT INTO conversation_settings (conversation_id) SELECT id FROM conversations;
CREATE TABLE answer_stats (
    message_id TEXT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    ttft_s REAL,
    prompt_tps REAL,
    gen_tps REAL,
    prompt_tokens INTEGER,
    tokens INTEGER,
    ended TEXT NOT NULL DEFAULT '',
    ran_on TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT ''
);
ALTER TABLE messages ADD COLUMN note TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN deleted_at REAL;
ALTER TABLE conversations ADD COLUMN deleted_at REAL;
CREATE INDEX conversations_by_updated ON conversations(updated);
UPDATE messages SET finish = 'stop' WHERE finish = '' AND role != 'assistant';
"""

MIGRATIONS: list[str] = [_V1, _V2, _V3]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, to: int = SCHEMA_VERSION) -> None:
    """Bring `conn` from its user_version up to `to`, one transaction per step."""
    have = conn.execute("PRAGMA user_version").fetchone()[0]
    for n in range(have, to):
        # executescript commits first; the step and its version number go in together
        conn.executescript(f"BEGIN;\n{MIGRATIONS[n]}\nPRAGMA user_version = {n + 1};\nCOMMIT;")


# -- the store --------------------------------------------------------------------------------


class Store:
    """One chat database. Thread-safe (one connection behind a lock)."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else default_path()
        self.read_only = False
        self.message = ""  # said to the person once: read-only, or a damaged file set aside
        self._lock = threading.RLock()
        self._conn = self._open()

    # -- opening ------
    def _connect(self, read_only: bool = False) -> sqlite3.Connection:
        if read_only:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        else:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.row_factory = sqlite3.Row
        return conn

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = self._connect()
            version = self._check(conn)
        except sqlite3.DatabaseError as e:
            with contextlib.suppress(Exception):
                conn.close()
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                raise
            aside = self._set_aside()
            self.message = (
                f"The chat history file could not be read ({e}). It was kept as {aside.name} "
                "and a new, empty history started."
            )
            conn = self._connect()
            version = self._check(conn)
        if version > SCHEMA_VERSION:
            conn.close()
            self.read_only = True
            self.message = (
                "This chat history was written by a newer LayerLab (schema "
                f"{version}, this one knows {SCHEMA_VERSION}). It is open read-only: "
                "update LayerLab to add to it."
            )
            return self._connect(read_only=True)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: a crash loses no commit
        migrate(conn)
        return conn

    @staticmethod
    def _check(conn: sqlite3.Connection) -> int:
        """The schema version; raises DatabaseError for a file that is not a sound database."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            raise sqlite3.DatabaseError(f"integrity check: {result}")
        return version

    def _set_aside(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        n = 1
        while aside.exists():
            aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}-{n}")
            n += 1
        os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):  # they belong to the damaged file, not the new one
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                os.replace(side, aside.with_name(aside.name + suffix))
        return aside

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._conn.close()

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._conn.execute("PRAGMA user_version").fetchone()[0]

    # -- helpers ------
    def _write(self) -> contextlib.AbstractContextManager:
        if self.read_only:
            raise StoreReadOnly(self.message)
        return _Transaction(self._conn, self._lock)

    def _rows(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, tuple(args)).fetchall()

    # -- conversations ------
    def create_conversation(
        self, title: str = "", settings: ConversationSettings | None = None
    ) -> ConversationInfo:
        now = time.time()
        cid = new_id()
        with self._write() as c:
            c.execute(
                "INSERT INTO conversations (id, title, created, updated) VALUES (?, ?, ?, ?)",
                (cid, title, now, now),
            )
            c.execute("INSERT INTO conversation_settings (conversation_id) VALUES (?)", (cid,))
        if settings is not None:
            self.set_settings(cid, settings)
        return self.conversation(cid)

    def conversation(self, cid: str) -> ConversationInfo:
        rows = self._rows("SELECT * FROM conversations WHERE id = ?", (cid,))
        if not rows:
            raise KeyError(f"There is no conversation {cid}.")
        return _info(rows[0])

    def conversations(self, include_deleted: bool = False) -> list[ConversationInfo]:
        """Newest first (by the last time anything was said or changed)."""
        where = "" if include_deleted else "WHERE deleted_at IS NULL"
        rows = self._rows(f"SELECT * FROM conversations {where} ORDER BY updated DESC, rowid DESC")
        return [_info(r) for r in rows]

    def rename(self, cid: str, title: str) -> None:
        with self._write() as c:
            # not news: the list stays in the order things were said
            c.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, cid))

    def delete_conversation(self, cid: str) -> None:
        """Hidden at once; undo_delete_conversation brings it back until purge()."""
        with self._write() as c:
            c.execute("UPDATE conversations SET deleted_at = ? WHERE id = ?", (time.time(), cid))

    def undo_delete_conversation(self, cid: str) -> None:
        with self._write() as c:
            c.execute("UPDATE conversations SET deleted_at = NULL WHERE id = ?", (cid,))

    def purge(self, older_than_s: float = PURGE_AFTER_S) -> int:
        """Remove for good what was deleted more than `older_than_s` ago; returns how many."""
        cutoff = time.time() - older_than_s
        with self._write() as c:
            n = c.execute(
                "DELETE FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at <= ?",
                (cutoff,),
            ).rowcount
            n += c.execute(
                "DELETE FROM messages WHERE deleted_at IS NOT NULL AND deleted_at <= ?", (cutoff,)
            ).rowcount
        return n

    def _touch(self, c: sqlite3.Connection, cid: str) -> None:
        c.execute("UPDATE conversations SET updated = ? WHERE id = ?", (time.time(), cid))

    # -- settings ------
    def settings(self, cid: str) -> ConversationSettings:
        rows = self._rows("SELECT * FROM conversation_settings WHERE conversation_id = ?", (cid,))
        if not rows:
            return ConversationSettings()
        r = rows[0]
        sampling = Sampling(
            r["preset"],
            r["temperature"],
            r["top_p"],
            r["top_k"],
            r["min_p"],
            r["repeat_penalty"],
            r["max_tokens"],
            r["seed"],
        )
        return ConversationSettings(
            r["system_prompt"], sampling, r["template"], bool(r["drop_oldest"])
        )

    def set_settings(self, cid: str, settings: ConversationSettings) -> None:
        s = settings.sampling
        with self._write() as c:
            c.execute(
                "INSERT OR REPLACE INTO conversation_settings VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    cid,
                    settings.system_prompt,
                    s.preset,
                    s.temperature,
                    s.top_p,
                    s.top_k,
                    s.min_p,
                    s.repeat_penalty,
                    s.max_tokens,
                    s.seed,
                    settings.template,
                    int(settings.drop_oldest),
                ),
            )

    # -- messages: the tree ------
    def add_message(
        self,
        cid: str,
        parent_id: str | None,
        role: str,
        content: str = "",
        finish: str = "stop",
        created: float | None = None,
    ) -> Message:
        """A new message under `parent_id` (None: a root); it becomes the current leaf."""
        mid = new_id()
        created = time.time() if created is None else created
        with self._write() as c:
            c.execute(
                "INSERT INTO messages (id, conversation_id, parent_id, role, content, created, "
                "finish) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (mid, cid, parent_id, role, content, created, finish),
            )
            c.execute("UPDATE conversations SET current_leaf = ? WHERE id = ?", (mid, cid))
            self._touch(c, cid)
            if role == "user":  # a conversation is named by its first question
                c.execute(
                    "UPDATE conversations SET title = ? WHERE id = ? AND title = ''",
                    (_title_from(content), cid),
                )
        return self.message_by_id(mid)

    def message_by_id(self, mid: str) -> Message:
        rows = self._rows(
            "SELECT m.*, s.ttft_s, s.prompt_tps, s.gen_tps, s.prompt_tokens, s.tokens, s.ended, "
            "s.ran_on, s.model, s.message_id AS has_stats FROM messages m "
            "LEFT JOIN answer_stats s ON s.message_id = m.id WHERE m.id = ?",
            (mid,),
        )
        if not rows:
            raise KeyError(f"There is no message {mid}.")
        return _message(rows[0])

    def _all(self, cid: str) -> dict[str, Message]:
        rows = self._rows(
            "SELECT m.*, s.ttft_s, s.prompt_tps, s.gen_tps, s.prompt_tokens, s.tokens, s.ended, "
            "s.ran_on, s.model, s.message_id AS has_stats FROM messages m "
            "LEFT JOIN answer_stats s ON s.message_id = m.id "
            "WHERE m.conversation_id = ? AND m.deleted_at IS NULL ORDER BY m.created, m.rowid",
            (cid,),
        )
        return {r["id"]: _message(r) for r in rows}

    def current_path(self, cid: str, leaf: str | None = None) -> list[Message]:
        """The messages from the root to `leaf` (default: the current leaf), oldest first."""
        return self._path_in(self._all(cid), cid, leaf)

    def path_tail(
        self, cid: str, n: int, leaf: str | None = None
    ) -> tuple[list[tuple[Message, tuple[int, int]]], bool]:
        """The newest `n` messages of `current_path` with their branch positions, read from
        the leaf upwards without reading the rest: a window opens a 5,000-message
        conversation in milliseconds. Returns (rows, whether they reach the first message)."""
        if leaf is None:
            leaf = self.conversation(cid).current_leaf
        if leaf is None:
            return [], True
        ids = self._rows(
            "WITH RECURSIVE up(id, parent_id, depth) AS ("
            " SELECT id, parent_id, 0 FROM messages WHERE id = ? AND deleted_at IS NULL"
            " UNION ALL SELECT m.id, m.parent_id, up.depth + 1 FROM messages m"
            " JOIN up ON m.id = up.parent_id WHERE m.deleted_at IS NULL AND up.depth < ?)"
            " SELECT id, parent_id FROM up ORDER BY depth",
            (leaf, n),
        )
        complete = bool(ids) and ids[-1]["parent_id"] is None
        if len(ids) > n:
            ids, complete = ids[:n], False
        elif not complete:  # a deleted message on the way: what is below it is hidden too
            return [], True
        wanted = [r["id"] for r in ids]
        marks = ",".join("?" * len(wanted))
        rows = self._rows(
            "SELECT m.*, s.ttft_s, s.prompt_tps, s.gen_tps, s.prompt_tokens, s.tokens, s.ended, "
            "s.ran_on, s.model, s.message_id AS has_stats FROM messages m "
            f"LEFT JOIN answer_stats s ON s.message_id = m.id WHERE m.id IN ({marks})",
            wanted,
        )
        by_id = {r["id"]: _message(r) for r in rows}
        parents = {r["parent_id"] for r in ids}
        kids: dict[str | None, list[str]] = {}
        named = [p for p in parents if p is not None]
        sql = (
            "SELECT id, parent_id FROM messages WHERE conversation_id = ? AND deleted_at IS NULL"
            f" AND (parent_id IN ({','.join('?' * len(named))})"
            f"{' OR parent_id IS NULL' if None in parents else ''}) ORDER BY created, rowid"
        )
        for r in self._rows(sql, [cid, *named]):
            kids.setdefault(r["parent_id"], []).append(r["id"])
        out = []
        for mid in reversed(wanted):
            m = by_id[mid]
            sibs = kids.get(m.parent_id, [mid])
            out.append((m, (sibs.index(mid) + 1, len(sibs))))
        return out, complete

    def _path_in(self, every: dict[str, Message], cid: str, leaf: str | None) -> list[Message]:
        if leaf is None:
            leaf = self.conversation(cid).current_leaf
        out: list[Message] = []
        seen: set[str] = set()
        while leaf is not None and leaf in every and leaf not in seen:
            seen.add(leaf)
            m = every[leaf]
            out.append(m)
            leaf = m.parent_id
        if leaf is not None:  # a deleted message on the way: what is below it is hidden too
            return []
        out.reverse()
        return out

    def siblings(self, mid: str) -> list[Message]:
        """The alternatives at this message's place (itself included), oldest first."""
        m = self.message_by_id(mid)
        every = self._all(m.conversation_id)
        return [x for x in every.values() if x.parent_id == m.parent_id]

    def branch_position(self, mid: str) -> tuple[int, int]:
        """(1-based index, count) among its alternatives: "< 2/3 >"."""
        ids = [s.id for s in self.siblings(mid)]
        return ids.index(mid) + 1, len(ids)

    def deepest_leaf(self, mid: str) -> str:
        """Follow the newest child down: where a branch's conversation last ended."""
        m = self.message_by_id(mid)
        every = self._all(m.conversation_id)
        children: dict[str | None, list[str]] = {}
        for x in every.values():
            children.setdefault(x.parent_id, []).append(x.id)
        leaf = mid
        while children.get(leaf):
            leaf = children[leaf][-1]
        return leaf

    def set_leaf(self, cid: str, leaf: str) -> None:
        with self._write() as c:
            c.execute("UPDATE conversations SET current_leaf = ? WHERE id = ?", (leaf, cid))

    def switch_branch(self, mid: str, step: int) -> str:
        """Flip to the alternative `step` places from `mid` (-1: "<", +1: ">"); the leaf moves
        to where that branch last ended. Returns the alternative's id."""
        sibs = self.siblings(mid)
        ids = [s.id for s in sibs]
        i = max(0, min(len(ids) - 1, ids.index(mid) + step))
        target = ids[i]
        self.set_leaf(sibs[i].conversation_id, self.deepest_leaf(target))
        return target

    def delete_message(self, mid: str) -> str | None:
        """Hide a message (and what follows it on its branch); the leaf moves to a sibling's
        branch, or to its parent. Returns the id undo_delete_message takes."""
        m = self.message_by_id(mid)
        others = [s for s in self.siblings(mid) if s.id != mid]
        with self._write() as c:
            c.execute("UPDATE messages SET deleted_at = ? WHERE id = ?", (time.time(), mid))
            self._touch(c, m.conversation_id)
        leaf = self.deepest_leaf(others[-1].id) if others else m.parent_id
        self.set_leaf(m.conversation_id, leaf) if leaf else self._clear_leaf(m.conversation_id)
        return mid

    def _clear_leaf(self, cid: str) -> None:
        with self._write() as c:
            c.execute("UPDATE conversations SET current_leaf = NULL WHERE id = ?", (cid,))

    def undo_delete_message(self, mid: str) -> None:
        with self._write() as c:
            c.execute("UPDATE messages SET deleted_at = NULL WHERE id = ?", (mid,))
        m = self.message_by_id(mid)
        self.set_leaf(m.conversation_id, self.deepest_leaf(mid))

    # -- answers ------
    def append_text(self, mid: str, text: str) -> None:
        with self._write() as c:
            c.execute("UPDATE messages SET content = content || ? WHERE id = ?", (text, mid))
            c.execute(
                "UPDATE conversations SET updated = ? WHERE id = "
                "(SELECT conversation_id FROM messages WHERE id = ?)",
                (time.time(), mid),
            )

    def finish_answer(
        self, mid: str, finish: str, stats: AnswerStats | None = None, note: str = ""
    ) -> None:
        with self._write() as c:
            c.execute("UPDATE messages SET finish = ?, note = ? WHERE id = ?", (finish, note, mid))
            if stats is not None:
                s = stats
                c.execute(
                    "INSERT OR REPLACE INTO answer_stats VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        mid,
                        s.ttft_s,
                        s.prompt_tps,
                        s.gen_tps,
                        s.prompt_tokens,
                        s.tokens,
                        s.ended,
                        s.ran_on,
                        s.model,
                    ),
                )
            row = c.execute("SELECT conversation_id FROM messages WHERE id = ?", (mid,)).fetchone()
            if row:
                self._touch(c, row[0])

    def reopen_answer(self, mid: str) -> None:
        """Continue writes on: the answer is unfinished again until it ends."""
        with self._write() as c:
            c.execute("UPDATE messages SET finish = '', note = '' WHERE id = ?", (mid,))

    def touch_answer(self, mid: str) -> None:
        """The answer's writer is alive (its conversation's `updated` moves on)."""
        with self._write() as c:
            c.execute(
                "UPDATE conversations SET updated = ? WHERE id = "
                "(SELECT conversation_id FROM messages WHERE id = ?)",
                (time.time(), mid),
            )

    def recover_unfinished(self, stale_s: float = 10.0) -> int:
        """Answers a crash left unfinished are marked so, keeping the text they had; returns
        how many. A live writer touches its conversation every flush, so an unfinished answer
        in a conversation untouched for `stale_s` has no writer (another process's live
        answer is left alone)."""
        if self.read_only:
            return 0
        with self._write() as c:
            return c.execute(
                "UPDATE messages SET finish = 'error', note = 'The answer was cut off: "
                "LayerLab stopped while writing it.' WHERE role = 'assistant' AND finish = '' "
                "AND conversation_id IN (SELECT id FROM conversations WHERE updated < ?)",
                (time.time() - stale_s,),
            ).rowcount

    def writer(self, mid: str, interval_s: float = FLUSH_INTERVAL_S) -> AnswerWriter:
        return AnswerWriter(self, mid, interval_s)

    # -- search ------
    def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        """Conversations whose title or any message contains `text` (case-insensitive)."""
        if not text.strip():
            return []
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._rows(
            "SELECT c.*, NULL AS mid, c.title AS hit FROM conversations c "
            "WHERE c.deleted_at IS NULL AND c.title LIKE ? ESCAPE '\\' "
            "UNION ALL "
            "SELECT c.*, m.id AS mid, m.content AS hit FROM messages m "
            "JOIN conversations c ON c.id = m.conversation_id "
            "WHERE c.deleted_at IS NULL AND m.deleted_at IS NULL AND m.content LIKE ? ESCAPE '\\' "
            "ORDER BY updated DESC LIMIT ?",
            (like, like, limit * 4),
        )
        hits: list[SearchHit] = []
        seen: set[str] = set()
        for r in rows:
            if r["id"] in seen:
                continue
            seen.add(r["id"])
            hits.append(SearchHit(_info(r), r["mid"], _excerpt(r["hit"], text)))
            if len(hits) >= limit:
                break
        return hits

    # -- export / import ------
    def export_json(self, cid: str) -> dict:
        """The whole tree: every branch, settings and stats."""
        info = self.conversation(cid)
        settings = self.settings(cid)
        messages = []
        for m in self._all(cid).values():
            d = {k: v for k, v in asdict(m).items() if k not in ("conversation_id", "stats")}
            d["stats"] = asdict(m.stats) if m.stats else None
            messages.append(d)
        return {
            "format": EXPORT_FORMAT,
            "version": 1,
            "id": info.id,
            "title": info.title,
            "created": info.created,
            "updated": info.updated,
            "current_leaf": info.current_leaf,
            "settings": {
                "system_prompt": settings.system_prompt,
                "template": settings.template,
                "sampling": asdict(settings.sampling),
            },
            "messages": messages,
        }

    def export_all(self) -> dict:
        return {
            "format": EXPORT_FORMAT,
            "version": 1,
            "conversations": [self.export_json(c.id) for c in self.conversations()],
        }

    def export_markdown(self, cid: str) -> str:
        """The conversation as shown (the current branch), readable anywhere."""
        info = self.conversation(cid)
        settings = self.settings(cid)
        lines = [f"# {info.title or 'Conversation'}", ""]
        if settings.system_prompt:
            lines += ["**System:**", "", settings.system_prompt, ""]
        for m in self.current_path(cid):
            who = {"user": "You", "assistant": "Assistant", "system": "System"}.get(m.role, m.role)
            lines += [f"## {who}", "", m.content, ""]
            if m.stats:
                lines += [f"*{m.stats.line()}*", ""]
            if m.note:
                lines += [f"*{m.note}*", ""]
        return "\n".join(lines).rstrip() + "\n"

    def import_json(self, data: dict) -> list[str]:
        """Import one exported conversation or an export of all; new ids, nothing overwritten.
        Returns the new conversations' ids. Raises ImportProblem in words."""
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise ImportProblem("This file is not a LayerLab chat export.")
        items = data.get("conversations", [data])
        return [self._import_one(item) for item in items]

    def _import_one(self, item: dict) -> str:
        try:
            messages = list(item["messages"])
            sampling = Sampling(**item.get("settings", {}).get("sampling", {}))
            settings = ConversationSettings(
                item.get("settings", {}).get("system_prompt", ""),
                sampling,
                item.get("settings", {}).get("template", ""),
            )
        except (KeyError, TypeError) as e:
            raise ImportProblem(f"The export is missing or garbles a field ({e}).") from e
        info = self.create_conversation(str(item.get("title", "")), settings)
        ids: dict[str, str] = {}
        with self._write() as c:
            # parents before children: the export lists them by time, but be sure
            pending = sorted(messages, key=lambda m: float(m.get("created", 0)))
            while pending:
                progressed = []
                for m in pending:
                    parent = m.get("parent_id")
                    if parent is not None and parent not in ids:
                        continue
                    mid = new_id()
                    ids[m["id"]] = mid
                    c.execute(
                        "INSERT INTO messages (id, conversation_id, parent_id, role, content, "
                        "created, finish, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            mid,
                            info.id,
                            ids.get(parent) if parent else None,
                            str(m["role"]),
                            str(m.get("content", "")),
                            float(m.get("created", time.time())),
                            str(m.get("finish", "stop")),
                            str(m.get("note", "")),
                        ),
                    )
                    if m.get("stats"):
                        st = AnswerStats(**m["stats"])
                        c.execute(
                            "INSERT INTO answer_stats VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (mid, *astuple_stats(st)),
                        )
                    progressed.append(m)
                if not progressed:
                    raise ImportProblem("The export's messages point at parents it lacks.")
                pending = [m for m in pending if m not in progressed]
            leaf = ids.get(item.get("current_leaf") or "")
            c.execute(
                "UPDATE conversations SET current_leaf = ?, created = ? WHERE id = ?",
                (leaf, float(item.get("created", time.time())), info.id),
            )
        return info.id


def astuple_stats(s: AnswerStats) -> tuple:
    return (
        s.ttft_s,
        s.prompt_tps,
        s.gen_tps,
        s.prompt_tokens,
        s.tokens,
        s.ended,
        s.ran_on,
        s.model,
    )


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT under the store's lock (rolled back on an error)."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock):
        self._conn, self._lock = conn, lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._conn

    def __exit__(self, kind, *_exc) -> None:
        try:
            self._conn.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self._lock.release()


class AnswerWriter:
    """Writes one answer's text as it streams: batched, flushed at least every `interval_s`
    by its own thread (so a pause in the stream does not hold text back), and at close."""

    def __init__(self, store: Store, mid: str, interval_s: float = FLUSH_INTERVAL_S):
        self._store, self.mid, self._interval = store, mid, interval_s
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.flushes = 0
        self._thread = threading.Thread(target=self._run, name="chat-writer", daemon=True)
        self._thread.start()

    def add(self, text: str) -> None:
        with self._lock:
            self._pending.append(text)

    def flush(self) -> None:
        with self._lock:
            text = "".join(self._pending)
            self._pending.clear()
        if text:
            self._store.append_text(self.mid, text)
            self.flushes += 1

    def _run(self) -> None:
        while not self._closed.wait(self._interval):
            with contextlib.suppress(sqlite3.Error):
                before = self.flushes
                self.flush()
                if self.flushes == before:  # a long prompt: no text yet, but alive
                    self._store.touch_answer(self.mid)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self.flush()


# -- rows to objects ----------------------------------------------------------------------


def _info(r: sqlite3.Row) -> ConversationInfo:
    return ConversationInfo(
        r["id"],
        r["title"],
        r["created"],
        r["updated"],
        r["current_leaf"],
        r["deleted_at"] is not None,
    )


def _message(r: sqlite3.Row) -> Message:
    stats = None
    if r["has_stats"] is not None:
        stats = AnswerStats(
            r["ttft_s"],
            r["prompt_tps"],
            r["gen_tps"],
            r["prompt_tokens"],
            r["tokens"],
            r["ended"],
            r["ran_on"],
            r["model"],
        )
    return Message(
        r["id"],
        r["conversation_id"],
        r["parent_id"],
        r["role"],
        r["content"],
        r["created"],
        r["finish"],
        r["note"],
        stats,
    )


def _title_from(text: str, n: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= n else line[: n - 1].rstrip() + "…"


def _excerpt(text: str, needle: str, width: int = 40) -> str:
    i = text.lower().find(needle.lower())
    if i < 0:
        return _title_from(text, 2 * width)
    start = max(0, i - width)
    piece = " ".join(text[start : i + len(needle) + width].split())
    return ("…" if start else "") + piece + ("…" if i + len(needle) + width < len(text) else "")


def load_export(path: Path) -> dict:
    """Read an export file; ImportProblem in words when it is not one."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ImportProblem(f"Could not read {path}: {e}") from e


__all__ = [
    "PRESETS",
    "SCHEMA_VERSION",
    "AnswerStats",
    "AnswerWriter",
    "ConversationInfo",
    "ConversationSettings",
    "ImportProblem",
    "Message",
    "Sampling",
    "SearchHit",
    "Store",
    "StoreReadOnly",
    "default_path",
    "load_export",
    "migrate",
]
