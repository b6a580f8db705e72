"""The download manager: one item per download, a queue, one transfer at a time by default.

An item is a quant of a repo (every part of a split model). Its state is a small closed set
a view can match on; bytes, speed and time left are computed here, once, from the transfer's
reports. Each file moves in a child process (core/hub/transfer.py), so pause and cancel end
the transfer at once; pause keeps the partial file and resume continues from it with a Range
request, as does a download interrupted by a quit, a kill -9 or a lost network. A network
lost for longer than the retries' backoff puts the download in "waiting_for_network": a cheap
check (one HEAD, a short timeout) now and then, and the transfer goes on from the partial
file's last byte as soon as the hub answers again, with nobody pressing Resume. Nothing enters
the library before its sha256 matches the hub's tree.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from layerlab.core.hub.config import DEFAULT_ENDPOINT, HubConfig, no_telemetry
from layerlab.core.hub.problems import HubProblem
from layerlab.core.hub.quants import HubFileEntry
from layerlab.core.units import format_bytes

DownloadState = Literal[
    "queued",
    "downloading",
    "waiting",  # a retry's backoff (429, 5xx, a dropped connection)
    "waiting_for_network",  # the network is gone past the retries: it goes on by itself
    "paused",
    "verifying",
    "done",
    "failed",
    "cancelled",
]
ACTIVE: frozenset[str] = frozenset({"downloading", "waiting", "waiting_for_network", "verifying"})
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled"})
RETRY_DELAYS_S = (2.0, 4.0, 8.0, 16.0, 30.0)  # backoff after 429, 5xx, a lost network
# faults that mean the network (not the hub) is away: past the retries they wait, not fail
NETWORK_KINDS: frozenset[str] = frozenset({"no_network", "dropped"})
# the hub answered the check this many times in a row and the file still made no progress:
# something between (a proxy, a firewall on the file's address) blocks it; say so and stop
MAX_COMEBACKS_WITHOUT_PROGRESS = 3


@dataclass(frozen=True)
class NetworkWait:
    """How a download waits for a lost network: one HEAD on its file (given `timeout_s`),
    `first_s` after the last retry, then at twice the interval each time, up to `max_s`."""

    first_s: float = 2.0
    max_s: float = 30.0
    timeout_s: float = 5.0


def waiting_words(config: HubConfig) -> str:
    who = "Hugging Face" if config.endpoint == DEFAULT_ENDPOINT else config.host
    if config.offline:
        return (
            "Waiting: the offline switch is on. It goes on by itself when the switch is off "
            f"and {who} answers."
        )
    return f"Waiting for the network… it goes on by itself when {who} answers again."


@dataclass
class DownloadItem:
    id: int
    repo_id: str
    tag: str
    files: list[HubFileEntry]
    revision: str | None = None
    state: DownloadState = "queued"
    done_bytes: int = 0
    speed: float = 0.0  # bytes/s over the last few seconds
    eta_s: float | None = None
    note: str = ""  # what is happening, in words ("trying again in 4 s")
    problem: HubProblem | None = None
    path: str = ""  # the first file, once done (llama.cpp loads a split from its first part)
    restored: bool = False  # left unfinished by the last run, not yet continued
    _samples: deque = field(default_factory=lambda: deque(maxlen=64), repr=False)

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def name(self) -> str:
        return f"{self.repo_id}:{self.tag}"

    @property
    def fraction(self) -> float:
        return self.done_bytes / self.total if self.total else 0.0

    def progress_text(self) -> str:
        """'1.2 GiB of 4.1 GiB · 38.5 MiB/s · 1 min 17 s left'"""
        text = f"{format_bytes(self.done_bytes)} of {format_bytes(self.total)}"
        if self.state == "downloading" and self.speed > 0:
            text += f" · {format_bytes(int(self.speed))}/s"
            if self.eta_s is not None:
                text += f" · {duration_text(self.eta_s)} left"
        return text

    def _measure(self, done: int, now: float) -> None:
        """Speed over a ~3 s window and time left: the one place these are computed."""
        self.done_bytes = done
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > 3.0:
            self._samples.popleft()
        t0, d0 = self._samples[0]
        if now - t0 >= 0.2 and done >= d0:
            self.speed = (done - d0) / (now - t0)
            self.eta_s = (self.total - done) / self.speed if self.speed > 0 else None


def _end(proc: subprocess.Popen) -> None:
    """End a transfer process that has not started (a spare) and close its pipes."""
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def duration_text(s: float) -> str:
    s = round(s)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


class DownloadManager:
    """Thread-safe. Subscribers get the changed item, from the manager's threads."""

    def __init__(
        self,
        config: HubConfig,
        token: Callable[[], str | None] = lambda: None,
        parallel: int = 1,
        python: str = sys.executable,
        retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S,
        persist: bool = True,
        network_wait: NetworkWait = NetworkWait(),  # frozen: one shared default is fine
    ):
        self.config = config
        self._token = token
        self.parallel = parallel
        self._python = python
        self._retry_delays = retry_delays_s
        self._network_wait = network_wait
        self._persist = persist
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._items: list[DownloadItem] = []
        self._ids = itertools.count(1)
        self._procs: dict[int, subprocess.Popen] = {}
        self._spare: subprocess.Popen | None = None
        self._subscribers: list[Callable[[DownloadItem], None]] = []
        self._closed = False
        self._thread: threading.Thread | None = None
        self._restore()

    # -- what the person does ------
    def subscribe(self, callback: Callable[[DownloadItem], None]) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def items(self) -> list[DownloadItem]:
        with self._lock:
            return list(self._items)

    def get(self, item_id: int) -> DownloadItem | None:
        with self._lock:
            return next((i for i in self._items if i.id == item_id), None)

    def add(
        self, repo_id: str, tag: str, files: list[HubFileEntry], revision: str | None = None
    ) -> DownloadItem:
        """Queue a download (returns at once). The same quant already queued or running is
        returned instead of a second copy. Raises HubProblem when the disk cannot hold it."""
        with self._lock:
            for i in self._items:
                if i.repo_id == repo_id and i.tag == tag and i.state not in FINISHED:
                    return i
        self.check_space(files, repo_id)
        item = DownloadItem(next(self._ids), repo_id, tag, list(files), revision)
        with self._lock:
            self._items.append(item)
            self._start_thread()
            self._wake.notify_all()
        self._changed(item)
        return item

    def pause(self, item_id: int) -> None:
        """Stop the transfer now; the partial file stays and Resume continues from it."""
        self._stop(item_id, "paused", "Paused.")

    def resume(self, item_id: int) -> None:
        with self._lock:
            item = self.get(item_id)
            if item is None or item.state not in ("paused", "failed"):
                return
            item.state, item.note, item.problem = "queued", "", None
            item.restored = False
            self._start_thread()
            self._wake.notify_all()
        self._changed(item)

    retry = resume

    def cancel(self, item_id: int) -> None:
        """Stop the transfer now and remove what it had written."""
        item = self._stop(item_id, "cancelled", "Cancelled.")
        if item is not None:
            self._discard_partials(item)
            self._changed(item)

    def remove(self, item_id: int) -> None:
        """Take a finished item off the list."""
        with self._lock:
            self._items = [i for i in self._items if not (i.id == item_id and i.state in FINISHED)]
        self._save()

    def wait(self, item_id: int, timeout_s: float | None = None) -> DownloadItem:
        """Block until the item is done, failed, cancelled or paused (for the CLI, tests)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            while True:
                item = self.get(item_id)
                if item is None or item.state in FINISHED or item.state == "paused":
                    return item  # type: ignore[return-value]
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"{item.name} is still {item.state}")
                self._wake.wait(left if left is not None else 1.0)

    def close(self) -> None:
        """Stop every transfer (partial files stay: the next start resumes them)."""
        with self._lock:
            self._closed = True
            procs = list(self._procs.values())
            spare, self._spare = self._spare, None
            self._wake.notify_all()
        if spare is not None:
            _end(spare)
        for p in procs:
            with contextlib.suppress(OSError):
                p.kill()
        self._save()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(5)

    # -- disk space ------
    def check_space(self, files: list[HubFileEntry], repo_id: str = "") -> None:
        """Raise HubProblem (disk_full) naming the folder and how much is missing."""
        folder = self.config.cache_dir
        need = sum(max(0, f.size - self._have(repo_id, f)) for f in files)
        need += self.config.margin_for(need)
        probe = folder
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if free < need:
            raise HubProblem(
                "disk_full",
                f"Not enough space in {folder}: this download needs {format_bytes(need)} "
                f"(with room to spare), {format_bytes(free)} are free; "
                f"{format_bytes(need - free)} more is needed. Free some space or choose another "
                "folder (HF_HOME).",
            )

    def partial_path(self, repo_id: str, f: HubFileEntry) -> Path | None:
        """Where the transfer keeps `f` until it is verified (huggingface_hub names its blobs
        by the LFS sha256)."""
        if not f.sha256:
            return None
        from huggingface_hub.file_download import repo_folder_name

        storage = self.config.cache_dir / repo_folder_name(repo_id=repo_id, repo_type="model")
        return storage / "blobs" / f"{f.sha256}.incomplete"

    def _have(self, repo_id: str, f: HubFileEntry) -> int:
        p = self.partial_path(repo_id, f) if repo_id else None
        try:
            return p.stat().st_size if p else 0
        except OSError:
            return 0

    # -- the queue ------
    def _start_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._schedule, name="hub-downloads", daemon=True
            )
            self._thread.start()

    def _schedule(self) -> None:
        running: dict[int, threading.Thread] = {}
        with self._lock:
            while not self._closed:
                running = {k: t for k, t in running.items() if t.is_alive()}
                queued = [i for i in self._items if i.state == "queued"]
                if queued and len(running) < self.parallel:
                    item = queued[0]
                    item.state, item.note = "downloading", ""
                    t = threading.Thread(target=self._run, args=(item,), daemon=True)
                    running[item.id] = t
                    t.start()
                    continue
                if not queued and not running:
                    self._thread = None
                    return
                self._wake.wait(0.5)

    def _run(self, item: DownloadItem) -> None:
        self._changed(item)
        attempt = 0
        mark: int | None = None  # bytes in hand when the last wait for the network began
        comebacks = 0  # the hub answered again, and the file got no further
        while True:
            try:
                self.check_space(item.files, item.repo_id)
                path = self._transfer_all(item)
            except Exception as e:
                problem = e if isinstance(e, HubProblem) else HubProblem("other", f"{e}")
                with self._lock:
                    if item.state in ("paused", "cancelled") or self._closed:
                        break  # the person stopped it: not a fault
                if problem.retryable and attempt < len(self._retry_delays):
                    delay = self._retry_delays[attempt]
                    attempt += 1
                    with self._lock:
                        item.state = "waiting"
                        item.note = f"{problem.message} Trying again in {delay:g} s."
                    self._changed(item)
                    self.prepare()  # the retry's transfer starts its Python during the wait
                    if self._sleep(item, delay, "waiting") and self._go_on(item, "waiting"):
                        continue
                    break
                if problem.kind in NETWORK_KINDS:
                    got_further = mark is None or item.done_bytes > mark
                    comebacks = 0 if got_further else comebacks + 1
                    mark = item.done_bytes
                    if comebacks < MAX_COMEBACKS_WITHOUT_PROGRESS:
                        if self._wait_for_network(item):
                            attempt = 0  # the network is back: a later fault gets its retries
                            continue
                        break
                    problem = HubProblem(
                        problem.kind,
                        f"{problem.message} {self.config.host} answers, but the file itself "
                        "does not come through (a proxy or firewall may block it), so LayerLab "
                        "stopped trying. Retry continues where it stopped.",
                    )
                with self._lock:
                    item.state, item.problem, item.note = "failed", problem, problem.message
                    item.speed, item.eta_s = 0.0, None
                self._changed(item)
                break
            else:
                with self._lock:
                    if item.state not in ("paused", "cancelled"):
                        item.state, item.path, item.note = "done", path, ""
                        item.done_bytes, item.speed, item.eta_s = item.total, 0.0, 0.0
                self._changed(item)
                break
        with self._lock:
            self._wake.notify_all()

    def _sleep(self, item: DownloadItem, delay: float, state: str) -> bool:
        """Wait `delay` in `state`; False when the person paused or cancelled meanwhile (or
        the manager closes)."""
        end = time.monotonic() + delay
        with self._lock:
            while time.monotonic() < end:
                if item.state != state or self._closed:
                    return False
                self._wake.wait(end - time.monotonic())
            return item.state == state and not self._closed

    def _go_on(self, item: DownloadItem, state: str) -> bool:
        """From a wait back to downloading, unless the person stopped it in the meantime."""
        with self._lock:
            if item.state != state or self._closed:
                return False
            item.state, item.note = "downloading", ""
        self._changed(item)
        return True

    def _wait_for_network(self, item: DownloadItem) -> bool:
        """Wait for the hub to answer again: one cheap check now and then (backoff up to
        NetworkWait.max_s), none while the offline switch is on. True when it answers (the
        transfer goes on from the partial file's last byte); False when the person paused
        or cancelled meanwhile, or the manager closes."""
        with self._lock:
            item.state, item.note = "waiting_for_network", waiting_words(self.config)
            item.speed, item.eta_s = 0.0, None
        self._changed(item)
        wait = self._network_wait
        delay = wait.first_s
        while self._sleep(item, delay, "waiting_for_network"):
            words = waiting_words(self.config)
            if words != item.note:  # the offline switch moved
                with self._lock:
                    item.note = words
                self._changed(item)
            if not self.config.offline and self._hub_answers(item, wait.timeout_s):
                return self._go_on(item, "waiting_for_network")
            delay = min(delay * 2, wait.max_s)
        return False

    def _hub_answers(self, item: DownloadItem, timeout_s: float) -> bool:
        """One HEAD on the item's first file, as a transfer starts with (no retries, no body).
        Any answer counts, an error status too: the transfer that follows says what it means."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        from layerlab.core.hub.problems import words_for

        no_telemetry()
        url = hf_hub_url(
            item.repo_id, item.files[0].path, revision=item.revision, endpoint=self.config.endpoint
        )
        try:
            get_hf_file_metadata(
                url, token=self._token(), timeout=timeout_s, endpoint=self.config.endpoint
            )
        except Exception as e:
            return words_for(e, "check").kind not in NETWORK_KINDS
        return True

    def _transfer_all(self, item: DownloadItem) -> str:
        first = ""
        before = 0
        for f in item.files:
            path = self._transfer(item, f, before)
            first = first or path
            before += f.size
        return first

    def _transfer(self, item: DownloadItem, f: HubFileEntry, before: int) -> str:
        req = {
            "repo_id": item.repo_id,
            "filename": f.path,
            "revision": item.revision,
            "endpoint": self.config.endpoint,
            "cache_dir": str(self.config.cache_dir),
            "sha256": f.sha256,
        }
        token = self._token()
        if token:
            req["token"] = token
        with self._lock:
            if item.state not in ("downloading", "waiting"):
                raise HubProblem("other", "stopped")
            proc = self._take_spare() or self._spawn()
            self._procs[item.id] = proc
            if f is not item.files[-1] or any(i.state == "queued" for i in self._items):
                self.prepare()  # the next file's transfer starts its Python meanwhile
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(req) + "\n")
            proc.stdin.close()
        except OSError:
            pass  # it died: read below finds no result and says so
        result: dict = {}
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                self._on_event(item, event, before)
                if event.get("event") in ("done", "error"):
                    result = event
        finally:
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            with self._lock:
                self._procs.pop(item.id, None)
        if result.get("event") == "done":
            with self._lock:
                item._measure(before + f.size, time.monotonic())
            return str(result["path"])
        with self._lock:
            stopped = item.state in ("paused", "cancelled") or self._closed
        if stopped:
            raise HubProblem("other", "stopped")
        if result.get("kind") == "corrupt":
            raise HubProblem(
                "corrupt",
                f"{f.path} arrived damaged (its sha256 does not match the hub's), so it was "
                "discarded. Download it again.",
            )
        if result.get("event") == "error":
            if result.get("kind") == "disk_full":
                self._discard_partials(item)
            raise HubProblem(result.get("kind", "other"), result.get("message", ""))
        raise HubProblem(
            "dropped", f"The download of {f.path} stopped unexpectedly. Resume continues it."
        )

    def prepare(self) -> None:
        """Start a transfer process ahead of time (it imports huggingface_hub, then waits for
        its request), so the next download begins at once. Asks nobody on the network. Not
        while the offline switch is on: nobody will download then. The spare ends with the
        manager (close), with the offline switch (drop_spare) and, should the app be killed,
        by itself (transfer.py watches its parent)."""
        with self._lock:
            if self._closed or self.config.offline:
                return
            if self._spare is not None and self._spare.poll() is None:
                return
            self._spare = self._spawn()

    def drop_spare(self) -> None:
        """End the transfer process kept ready (the offline switch went on)."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            _end(spare)

    def _take_spare(self) -> subprocess.Popen | None:
        spare, self._spare = self._spare, None
        if spare is not None and spare.poll() is not None:
            _end(spare)  # it died waiting: start a fresh one
            return None
        return spare

    def _spawn(self) -> subprocess.Popen:
        from layerlab.core.hub.transfer import parent_arg

        env = dict(os.environ)
        env.pop("HF_HUB_OFFLINE", None)  # the person started this download: it may go online
        return subprocess.Popen(
            # --parent: the child ends itself if this process dies, on every platform
            [self._python, "-m", "layerlab.core.hub.transfer", "--parent", parent_arg()],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.PIPE,
            env=env,
            text=True,
        )

    def _on_event(self, item: DownloadItem, event: dict, before: int) -> None:
        kind = event.get("event")
        with self._lock:
            if item.state in ("paused", "cancelled"):
                return
            if kind == "progress":
                item._measure(before + int(event.get("done", 0)), time.monotonic())
            elif kind == "verifying":
                item.state, item.note = "verifying", "Checking the file against the hub's sha256…"
            elif kind == "partial":
                return
            elif kind == "done" and item.state == "verifying":
                item.state, item.note = "downloading", ""
        self._changed(item)

    def _stop(self, item_id: int, state: DownloadState, note: str) -> DownloadItem | None:
        with self._lock:
            item = self.get(item_id)
            if item is None or item.state in FINISHED:
                return None
            item.state, item.note, item.speed, item.eta_s = state, note, 0.0, None
            proc = self._procs.get(item_id)
            self._wake.notify_all()
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()  # the socket closes with it: the transfer really stops
            proc.wait()
        self._changed(item)
        return item

    def _discard_partials(self, item: DownloadItem) -> None:
        for f in item.files:
            p = self.partial_path(item.repo_id, f)
            if p is not None:
                with contextlib.suppress(OSError):
                    p.unlink()
        with self._lock:
            item.done_bytes = 0

    # -- telling, keeping ------
    def _changed(self, item: DownloadItem) -> None:
        if item.state in FINISHED or item.state in ("paused", "queued"):
            self._save()
        with self._lock:
            subscribers = list(self._subscribers)
            self._wake.notify_all()
        for cb in subscribers:
            with contextlib.suppress(Exception):
                cb(item)

    @property
    def _state_file(self) -> Path:
        return self.config.state_dir / "downloads.json"

    def _save(self) -> None:
        """Unfinished downloads, so the next start offers to resume them."""
        if not self._persist:
            return
        from layerlab.core.atomic_file import write_atomic

        with self._lock:
            rows = [
                {
                    "repo_id": i.repo_id,
                    "tag": i.tag,
                    "revision": i.revision,
                    "files": [[f.path, f.size, f.sha256] for f in i.files],
                    # the person's pause is kept; anything else continues at the next start
                    "paused": i.state == "paused" and not i.restored,
                }
                for i in self._items
                if i.state not in FINISHED
            ]
        with contextlib.suppress(OSError):
            write_atomic(self._state_file, json.dumps(rows, indent=1))

    def _restore(self) -> None:
        if not self._persist:
            return
        try:
            rows = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return
        for row in rows if isinstance(rows, list) else []:
            try:
                files = [HubFileEntry(p, int(s), h) for p, s, h in row["files"]]
                item = DownloadItem(
                    next(self._ids), row["repo_id"], row["tag"], files, row.get("revision")
                )
            except (KeyError, TypeError, ValueError):
                continue
            item.state = "paused"
            item.done_bytes = sum(self._have(item.repo_id, f) for f in files)
            if row.get("paused"):
                item.note = "Paused. Resume continues where it stopped."
            else:
                item.note = "Stopped when LayerLab closed. It continues where it stopped."
                item.restored = True
            self._items.append(item)

    def continue_restored(self) -> list[DownloadItem]:
        """Queue again the downloads the last run left unfinished (quit, crash, lost network),
        so they continue where they stopped without the person pressing Resume. Nothing
        moves while the offline switch is on. Returns the items that were queued."""
        if self.config.offline:
            return []
        with self._lock:
            back = [i for i in self._items if i.restored and i.state == "paused"]
            for i in back:
                i.restored = False
                i.state, i.note = "queued", "Continuing where it stopped when LayerLab closed."
            if back:
                self._start_thread()
                self._wake.notify_all()
        for i in back:
            self._changed(i)
        return back
