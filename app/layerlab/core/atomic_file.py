"""The one way LayerLab replaces a file: write a temp file beside it, fsync, rename.

A crash, a kill -9 or a full disk mid-write leaves the old file whole, never half a new one
(qutebrowser's `savefile_open` is the model).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, data: bytes | str, mode: int | None = None) -> None:
    """Replace `path` with `data` all at once. `mode` (e.g. 0o600 for secrets) is set on the
    temp file before any byte is written, so the content is never readable by others."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode is not None:
            os.chmod(tmp, mode)  # before any byte is written (os.fchmod is POSIX-only)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
