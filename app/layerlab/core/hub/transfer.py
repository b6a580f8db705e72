"""One file's transfer, in a child process the download manager can stop at any byte.

Why a child: pausing or cancelling must really stop the transfer. huggingface_hub streams in
10 MiB chunks and offers no way to interrupt a read; a hook that raises stops only at the next
chunk. Ending this process closes its socket at once (bench/hub_download.py measures both).

Why not hf_hub_download for the bytes: huggingface_hub 2.4 writes each download to a
process-unique temporary file and deletes it when the call fails, so an interrupted download
starts again from zero. This child uses huggingface_hub's own pieces instead:
`get_hf_file_metadata` (etag, size, commit, the URL to read), `http_get` (its Range resume,
its retries on a dropped connection, its `tqdm_class` progress hook) into the blob's
`<etag>.incomplete` beside where huggingface_hub keeps the blob, then, once the sha256 matches
the tree's `lfs.sha256`, the blob is renamed into place and `hf_hub_download` itself makes the
cache entry (it finds the blob and links the snapshot to it, the cache layout stays its own).

The manager passes `--parent PID:START` (its pid and start time): the child ends itself when
that process is gone, on every platform (see `_exit_with_parent`).

Protocol: the request is one JSON line on stdin (the token rides in it: never on a command
line, never in a log); one JSON object per line on stdout: partial, progress, verifying, done
or error. The child imports huggingface_hub before it reads its request, so the manager can
start one ahead of time (a spare) and a download begins without waiting for Python to start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import sys
import threading
import time
from pathlib import Path

CHUNK = 1 << 20  # a progress report per MiB instead of per 10 MiB


def _say(**event) -> None:
    try:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, OSError):
        os._exit(1)  # the manager is gone


def _parent_alive(pid: int, started: float | None) -> bool:
    """Whether the manager `pid` (made at `started`, psutil's create_time) still runs. A pid
    that now names another process (Windows reuses them soon) counts as gone, as does a
    zombie (POSIX: dead, not yet reaped)."""
    import psutil

    try:
        if not psutil.pid_exists(pid):
            return False
        p = psutil.Process(pid)
        if started is not None and abs(p.create_time() - started) > 1.0:
            return False
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except (psutil.Error, OSError):
        return True  # it exists but will not say more (another user's): keep going


def _exit_with_parent(parent: tuple[int, float | None] | None = None) -> None:
    """Stop when the manager's process dies (kill -9 included): an orphan would keep writing
    the partial file the next run resumes from, or (a spare) idle forever.

    Two checks, every 0.2 s: on POSIX an orphan is handed to another parent at once, so
    os.getppid() changes; on Windows it never does, so the manager's pid and start time
    (`parent`, from --parent) are watched through psutil as well."""
    first = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.2)
            if os.getppid() != first or (parent is not None and not _parent_alive(*parent)):
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def parent_arg() -> str:
    """What the manager passes as --parent: its pid and start time ('1234:1767180000.125')."""
    import psutil

    return f"{os.getpid()}:{psutil.Process().create_time():.3f}"


def _parse_parent(argv: list[str]) -> tuple[int, float | None] | None:
    if "--parent" not in argv:
        return None
    try:
        pid, _, started = argv[argv.index("--parent") + 1].partition(":")
        return int(pid), float(started) if started else None
    except (IndexError, ValueError):
        return None


class Report:
    """huggingface_hub's `tqdm_class` hook: counts bytes, tells the manager ~10 times a second."""

    def __init__(self, *args, total: int | None = None, initial: int = 0, **kw):
        self.n = initial
        self.total = total
        self._last = 0.0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= 0.1:
            self._last = now
            _say(event="progress", done=self.n, total=self.total)

    def close(self) -> None:
        _say(event="progress", done=self.n, total=self.total)

    def __enter__(self) -> Report:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class HashingFile:
    """The partial file, hashed as it is written (one pass over the bytes instead of two), in
    a thread of its own: hashlib lets go of the GIL on large buffers, so hashing runs beside
    the socket reads instead of after each write. A resume hashes the kept prefix first (in
    that thread, while the request goes out); if huggingface_hub rewinds the file (a server
    that ignored Range), the running hash is dropped and the file is hashed at the end."""

    def __init__(self, f, prefix: Path | None, prefix_size: int = 0):
        self._f = f
        self._h = hashlib.sha256()
        self._q: queue.Queue = queue.Queue(maxsize=64)  # at most 64 chunks waiting
        self.valid = True
        self._thread = threading.Thread(
            target=self._hash, args=(prefix, prefix_size), name="sha256", daemon=True
        )
        self._thread.start()

    def _hash(self, prefix: Path | None, prefix_size: int) -> None:
        if prefix is not None:
            with prefix.open("rb") as old:
                left = prefix_size
                while left > 0:
                    block = old.read(min(4 << 20, left))
                    if not block:
                        break
                    self._h.update(block)
                    left -= len(block)
        while (data := self._q.get()) is not None:
            self._h.update(data)

    def write(self, data: bytes) -> int:
        n = self._f.write(data)
        self._q.put(data)
        return n

    def tell(self) -> int:
        return self._f.tell()

    def seek(self, *args) -> int:
        self.valid = False
        return self._f.seek(*args)

    def truncate(self, *args) -> int:
        self.valid = False
        return self._f.truncate(*args)

    def hexdigest(self) -> str | None:
        self._q.put(None)
        self._thread.join()
        return self._h.hexdigest() if self.valid else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _lock(path: Path):
    """An exclusive lock where huggingface_hub keeps its own locks, so two transfers never
    append to the same partial file."""
    try:
        import fcntl
    except ImportError:  # Windows: the manager runs one transfer per file anyway
        return contextlib.nullcontext()
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path, "w")  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def _load() -> None:
    """Everything a transfer needs, imported before the request arrives (a spare child)."""
    from layerlab.core.hub.config import no_telemetry

    no_telemetry()
    import huggingface_hub.file_download
    import huggingface_hub.utils  # noqa: F401


def run(req: dict) -> int:
    import huggingface_hub.constants as constants

    constants.DOWNLOAD_CHUNK_SIZE = int(req.get("chunk", CHUNK))
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.file_download import http_get, repo_folder_name
    from huggingface_hub.utils import build_hf_headers

    repo, filename = req["repo_id"], req["filename"]
    revision = req.get("revision") or "main"
    endpoint, cache_dir = req["endpoint"], req["cache_dir"]
    token = req.get("token") or None
    url = hf_hub_url(repo, filename, revision=revision, endpoint=endpoint)
    meta = get_hf_file_metadata(url, token=token, endpoint=endpoint)
    if not meta.etag:
        raise RuntimeError("the hub did not say which version of the file this is")
    storage = Path(cache_dir) / repo_folder_name(repo_id=repo, repo_type="model")
    blob = storage / "blobs" / meta.etag
    if not blob.exists():
        blob.parent.mkdir(parents=True, exist_ok=True)
        partial = blob.with_name(blob.name + ".incomplete")
        _say(event="partial", path=str(partial))
        cache_locks = Path(cache_dir) / ".locks" / storage.name
        with _lock(cache_locks / f"{meta.etag}.layerlab.lock"):
            if not blob.exists():
                want = req.get("sha256")
                with partial.open("ab") as raw:
                    have = partial.stat().st_size
                    f = HashingFile(raw, partial if have else None, have) if want else raw
                    http_get(
                        meta.location,
                        f,  # type: ignore[arg-type]
                        resume_size=have,
                        headers=build_hf_headers(token=token),
                        expected_size=meta.size,
                        displayed_filename=filename,
                        tqdm_class=Report,  # type: ignore[arg-type]
                    )
                _say(event="verifying")
                if want:
                    got = f.hexdigest() or _sha256(partial)
                    if got != want:
                        partial.unlink()
                        _say(event="error", kind="corrupt", sha256=got)
                        return 3
                os.replace(partial, blob)
    path = hf_hub_download(
        repo, filename, revision=revision, cache_dir=cache_dir, endpoint=endpoint, token=token
    )
    _say(event="done", path=path)
    return 0


def main() -> int:
    _exit_with_parent(_parse_parent(sys.argv[1:]))
    _load()
    line = sys.stdin.readline()
    if not line:
        return 0  # a spare the manager no longer needs
    req = json.loads(line)
    try:
        return run(req)
    except Exception as e:
        from layerlab.core.hub.problems import words_for

        host = req["endpoint"].split("://", 1)[-1].split("/", 1)[0]
        problem = words_for(e, f"download {req['filename']}", host)
        _say(event="error", kind=problem.kind, message=problem.message)
        return 3


if __name__ == "__main__":
    sys.exit(main())
