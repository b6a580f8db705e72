"""The chat pane under a fast stream and a long conversation.

  QT_QPA_PLATFORM=offscreen .venv/bin/python bench/chat_stream.py [--tokens 10000]

A stand-in engine (a child process speaking the engine's SSE shape on loopback: the
/layerlab/tokenize route and /v1/chat/completions streamed at 1,000 tokens a second) answers
the real ChatService and ChatPane, on a store holding a 5,000-message conversation.

Measured:
- opening that conversation: time to first paint (open_conversation until the transcript's
  first paint event; median of --opens, a fresh pane each), target <= 300 ms;
- while 1,000 tokens/s stream into it: the GUI's longest stall (a 5 ms QTimer heartbeat; the
  largest gap between beats minus the interval), target <= 50 ms; and the GUI thread's own
  work in the longest gap (thread CPU time: on a loaded machine, the wall gap also holds the
  time spent waiting for a core, which the idle floor shows);
- memory: RSS after opening, after each answer (bounded: the second answer adds ~nothing).
Prints figures and the CPU. --gil-watch also names the longest times a watching thread could
not run, with what every thread was doing then: one thread held Python's GIL (one long C
call: a Qt call, which PySide makes holding it, json.dumps, a full garbage collection; or
Python threads taking turns ahead of it), so the GUI thread's slots and timers waited too,
whatever thread it was; or no core was free (the process's CPU time in the gap tells).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from PySide6.QtCore import QEvent, QEventLoop, QObject, QTimer
from PySide6.QtWidgets import QApplication

from layerlab.core.chat.service import ChatService
from layerlab.core.chat.store import ConversationSettings, Sampling, Store
from layerlab.core.engine.client import EngineClient
from layerlab.ui.chat.chat_pane import ChatPane
from layerlab.ui.memory import settle_after_start

STAND_IN = r"""
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RATE, TOKENS = float(sys.argv[2]), int(sys.argv[3])
WORDS = ["The ", "quick ", "brown ", "fox ", "jumps ", "over ", "`the` ", "lazy ", "dog. "]

def chunk(text):
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/layerlab/tokenize":
            out = json.dumps({"tokens": 100, "prompt": "", "n_ctx": 1_000_000,
                              "chat_template": "yes"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        t0 = time.perf_counter()
        for i in range(TOKENS):
            # paragraphs, a code block now and then: what a model writes
            word = WORDS[i % len(WORDS)]
            if i % 60 == 59:
                word += "\n\n"
            if i % 600 == 300:
                word = "\n\n```python\nfor i in range(3):\n    print(i)\n```\n\n"
            self.wfile.write(b"data: " + json.dumps(chunk(word)).encode() + b"\n\n")
            if i % 10 == 9:
                self.wfile.flush()
                delay = t0 + (i + 1) / RATE - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
        last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": TOKENS},
                "timings": {"prompt_n": 100, "prompt_ms": 10.0,
                            "predicted_n": TOKENS, "predicted_ms": 1000.0 * TOKENS / RATE}}
        self.wfile.write(b"data: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def big_conversation(store: Store, n: int) -> str:
    """A conversation as people write them: questions, answers with Markdown and code."""
    c = store.create_conversation("big", ConversationSettings(sampling=Sampling(max_tokens=10**6)))
    parent = None
    answer = (
        "Here is how:\n\n1. first\n2. second\n\n```python\nprint('hello')\n```\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n" + "Some words to read. " * 20
    )
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        text = f"Question {i}: how do I do this?" if role == "user" else f"Answer {i}. " + answer
        parent = store.add_message(c.id, parent, role, text, finish="stop").id
    return c.id


class Paints(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def eventFilter(self, _obj, event) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.count += 1
        return False


class Heartbeat:
    """A 5 ms timer on the GUI thread: a long gap between beats is a stall a person feels."""

    INTERVAL_MS = 5

    def __init__(self) -> None:
        self.timer = QTimer()
        self.timer.setInterval(self.INTERVAL_MS)
        self.timer.timeout.connect(self._beat)
        self.last = self.last_cpu = self.started = 0.0
        self.worst = self.worst_cpu = self.worst_at = 0.0

    def start(self) -> None:
        self.last, self.last_cpu = time.perf_counter(), time.thread_time()
        self.started = self.last
        self.worst = self.worst_cpu = self.worst_at = 0.0
        self.timer.start()

    def _beat(self) -> None:
        # wall: what the person feels; CPU: what the GUI thread itself worked in that gap
        # (on a loaded machine, wall includes waiting for a core; CPU does not)
        now, cpu_now = time.perf_counter(), time.thread_time()
        if now - self.last - self.INTERVAL_MS / 1000 > self.worst:
            self.worst_at = self.last - self.started  # when the longest gap began
        self.worst = max(self.worst, now - self.last - self.INTERVAL_MS / 1000)
        self.worst_cpu = max(self.worst_cpu, cpu_now - self.last_cpu)
        self.last, self.last_cpu = now, cpu_now

    def stop(self) -> float:
        self.timer.stop()
        return self.worst


IDLE = ("threading.py", "queue.py", "selectors.py", "socket.py")  # a thread waiting


class GilWatch:
    """A thread that wakes every millisecond: when it could not run for longer than
    THRESHOLD_S, some thread held the GIL (a long C call, a full garbage collection, Python
    threads taking turns ahead of it) or no core was free. What each thread was doing when it
    got to run again names the call that held it (the line just after a long C call)."""

    THRESHOLD_S = 0.008

    def __init__(self) -> None:
        self.gaps: list[tuple[float, str, float, list[str]]] = []  # gap, when, CPU, stacks
        self.label, self.since = "", time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gil-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        me = threading.get_ident()
        names = {}
        last, last_cpu = time.perf_counter(), time.process_time()
        while not self._stop.is_set():
            time.sleep(0.001)
            now, cpu = time.perf_counter(), time.process_time()
            if now - last - 0.001 > self.THRESHOLD_S:
                names.update({t.ident: t.name for t in threading.enumerate()})
                stacks = []
                for ident, frame in sys._current_frames().items():
                    if ident == me:
                        continue
                    where = []
                    f = frame
                    while f is not None and len(where) < 4:
                        code = f.f_code
                        where.append(f"{Path(code.co_filename).name}:{f.f_lineno} {code.co_name}")
                        f = f.f_back
                    stacks.append(f"{names.get(ident, ident)}: " + " < ".join(where))
                what = f"{self.label} at {last - self.since:.2f} s"
                self.gaps.append((now - last - 0.001, what, cpu - last_cpu, stacks))
            last, last_cpu = now, cpu

    def report(self, each: int = 3) -> None:
        """The longest gaps of each answer, with the process's CPU time in the gap (about
        the gap: a thread held the GIL; far less: the process waited for a core)."""
        print(
            f"longest times a watching thread could not run (over {self.THRESHOLD_S * 1e3:.0f} ms):"
        )
        worst = []
        for label in dict.fromkeys(g[1].split(" at ")[0] for g in self.gaps):
            mine = [g for g in self.gaps if g[1].startswith(label + " ")]
            worst += sorted(mine, reverse=True)[:each]
        for gap, label, cpu, stacks in worst:
            print(f"  {gap * 1000:.0f} ms during {label} (process CPU {cpu * 1000:.0f} ms); then:")
            for line in stacks:
                if line.split(" < ")[0].split(": ", 1)[1].startswith(IDLE):
                    continue  # waiting, not working
                print(f"      {line}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def wait(app: QApplication, until, timeout_s: float) -> bool:
    """Run Qt's own event loop (as the app does) until `until()` or the timeout."""
    end = time.perf_counter() + timeout_s
    loop = QEventLoop()
    check = QTimer()
    check.setInterval(2)
    check.timeout.connect(lambda: (until() or time.perf_counter() > end) and loop.quit())
    check.start()
    if not until():
        loop.exec()
    check.stop()
    return bool(until())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--tokens", type=int, default=10_000, help="tokens per answer")
    ap.add_argument("--rate", type=float, default=1000.0, help="tokens a second")
    ap.add_argument("--answers", type=int, default=2)
    ap.add_argument("--opens", type=int, default=5, help="times the conversation is opened")
    ap.add_argument("--gil-watch", action="store_true", help="name the longest GIL holds")
    args = ap.parse_args()
    watch = None
    app = QApplication.instance() or QApplication(sys.argv)
    proc = psutil.Process()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", STAND_IN, str(port), str(args.rate), str(args.tokens)]
    )
    with tempfile.TemporaryDirectory() as d:
        try:
            path = Path(d) / "chats.sqlite3"
            seed = Store(path)
            t = time.perf_counter()
            cid = big_conversation(seed, args.messages)
            print(f"wrote {args.messages:,} messages in {time.perf_counter() - t:.1f} s")
            seed.close()
            client = EngineClient(f"http://127.0.0.1:{port}", "x")
            service = ChatService(lambda: client, path)
            for _ in range(50):  # the stand-in is up
                try:
                    client.tokenize(text="")
                    break
                except Exception:
                    time.sleep(0.1)
            rss0 = proc.memory_info().rss
            opens = []
            for _ in range(args.opens):  # a fresh pane each time: nothing rendered yet
                pane = ChatPane()
                pane.service.close()
                pane.service = service
                pane.resize(1000, 800)
                pane.show()
                paints = Paints()
                pane.transcript.viewport().installEventFilter(paints)
                wait(app, lambda: False, 0.3)  # the window settles (first show painted)
                pane.set_client(client)
                before = paints.count
                t = time.perf_counter()
                pane.open_conversation(cid)
                wait(app, lambda p=paints, b=before: p.count > b, 10)
                first_paint = time.perf_counter() - t
                wait(app, lambda p=pane: p.transcript.pending_renders == 0, 10)
                opens.append((first_paint, time.perf_counter() - t))
                if len(opens) < args.opens:
                    pane.shutdown()
                    pane.deleteLater()
            # what the app does once its window has shown (ui/app.py): collect, then freeze
            # what the start built, so later full collections do not walk it
            settle_after_start()
            first_paint = statistics.median(o[0] for o in opens)
            settled = statistics.median(o[1] for o in opens)
            rss_open = proc.memory_info().rss
            print(f"CPU: {cpu()} ({os.cpu_count()} logical cores)")
            print(
                f"open a {args.messages:,}-message conversation (median of {len(opens)}, a "
                f"fresh pane each): first paint {first_paint * 1000:.0f} ms (target <= 300), "
                f"every shown message formatted {settled * 1000:.0f} ms; each first paint: "
                + ", ".join(f"{o[0] * 1000:.0f}" for o in opens)
                + " ms"
            )
            print(
                f"RSS after opening: {rss_open / 2**20:.0f} MiB (+{(rss_open - rss0) / 2**20:.0f})"
            )
            beat = Heartbeat()
            # the floor: the same heartbeat with nothing streaming (a loaded machine's own
            # scheduling delays show here, not in the pane)
            beat.start()
            wait(app, lambda: False, 5)
            idle = beat.stop()
            print(
                f"idle, nothing streaming: GUI max stall {idle * 1000:.0f} ms over 5 s "
                f"(GUI-thread work between beats at most {beat.worst_cpu * 1000:.0f} ms); "
                f"load average {os.getloadavg()[0]:.1f}"
            )
            rss_prev = rss_open
            if args.gil_watch:
                watch = GilWatch()
            for n in range(args.answers):
                if watch is not None:
                    watch.label, watch.since = f"answer {n + 1}", time.perf_counter()
                pane.input.setPlainText(f"Tell me more ({n}).")
                beat.start()
                t = time.perf_counter()
                pane.send()
                ok = wait(app, lambda: not pane.busy, args.tokens / args.rate * 4 + 30)
                took = time.perf_counter() - t
                worst = beat.stop()
                answer = pane.conversation.messages[-1]
                rss = proc.memory_info().rss
                print(
                    f"answer {n + 1}: {args.tokens:,} tokens at {args.rate:,.0f}/s in {took:.1f} s"
                    f"{'' if ok else ' (DID NOT END)'}, {len(answer.content):,} chars, "
                    f"GUI max stall {worst * 1000:.0f} ms (target <= 50; GUI-thread work "
                    f"between beats at most {beat.worst_cpu * 1000:.0f} ms), "
                    f"RSS {rss / 2**20:.0f} MiB ({(rss - rss_prev) / 2**20:+.0f})"
                )
                if watch is not None:
                    print(f"  (its longest stall began {beat.worst_at:.2f} s after Send)")
                rss_prev = rss
            if watch is not None:
                watch.stop()
                watch.report()
            pane.shutdown()
            service.close()
        finally:
            server.kill()
            server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
