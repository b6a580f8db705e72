"""Chat store costs: write cost per streamed token, and the time to reopen after kill -9.

  .venv/bin/python bench/chat_store.py

1. A stand-in stream of N tokens goes through AnswerWriter (batched, flushed every 0.5 s)
   into a conversation of 5,000 messages; the cost is the stream's wall time with the writer
   against the same loop without it, per token.
2. A child process streams into the store and is killed with signal 9 mid-answer; then the
   time to open the store again (integrity check included) and to read the conversation.
Prints figures and ratios, and the CPU.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from layerlab.core.chat.store import Store

TOKENS = 20_000


def cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def big_conversation(store: Store, n: int = 5000) -> str:
    c = store.create_conversation("big")
    parent = None
    for i in range(n):
        parent = store.add_message(
            c.id, parent, "user" if i % 2 == 0 else "assistant", f"message {i} " * 20
        ).id
    return c.id


def stream(writer, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        if writer is not None:
            writer.add(f" tok{i}")
    return time.perf_counter() - t


CHILD = """
import sys, time
from layerlab.core.chat.store import Store
s = Store(sys.argv[1])
c = s.conversations()[0]
leaf = c.current_leaf
a = s.add_message(c.id, leaf, "assistant", "", finish="")
w = s.writer(a.id)
print(a.id, flush=True)
while True:
    w.add(" tok")
    time.sleep(0.001)
"""


def main() -> None:
    print(f"CPU: {cpu()} ({os.cpu_count()} logical cores)")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "chats.sqlite3"
        store = Store(path)
        t = time.perf_counter()
        cid = big_conversation(store)
        print(f"5,000 messages written one by one: {time.perf_counter() - t:.2f} s")
        leaf = store.conversation(cid).current_leaf
        a = store.add_message(cid, leaf, "assistant", "", finish="")
        bare = stream(None, TOKENS)
        writer = store.writer(a.id)
        t = time.perf_counter()
        spent = stream(writer, TOKENS)
        # a real stream lasts TOKENS / rate seconds; the flushes happen on the writer's thread
        writer.close()
        total = time.perf_counter() - t
        print(
            f"streaming {TOKENS:,} tokens: {spent / TOKENS * 1e6:.2f} µs/token on the stream's "
            f"thread (bare loop {bare / TOKENS * 1e6:.2f}), {writer.flushes} flushes, "
            f"{total:.3f} s to the last write"
        )
        t = time.perf_counter()
        for _ in range(200):
            store.append_text(a.id, " x")
        per_flush = (time.perf_counter() - t) / 200
        print(f"one flush (append to a growing answer): {per_flush * 1e3:.2f} ms")
        print(f"at 1,000 tokens/s flushed twice a second: {2 * per_flush * 100:.3f} % of one core")
        store.close()

        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE)
        child.stdout.readline()
        time.sleep(2.0)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        t = time.perf_counter()
        again = Store(path)
        opened = time.perf_counter() - t
        t = time.perf_counter()
        shown = again.current_path(cid)
        read = time.perf_counter() - t
        print(
            f"after kill -9: reopen {opened * 1e3:.1f} ms (integrity check included), "
            f"read the 5,000-message conversation {read * 1e3:.1f} ms ({len(shown)} shown), "
            f"message: {again.message or 'none'}"
        )
        again.close()


if __name__ == "__main__":
    main()
