"""Where header bytes come from: a local file, or a file on the hub read with Range requests.

A source only answers `read(offset, size)`; the reader asks for growing chunks, so a
remote header costs a few requests and never the file's data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from layerlab.core.hf_telemetry import no_telemetry

_SPLIT = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


class ByteSource(Protocol):
    name: str

    def read(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes from `offset`; fewer only at the end of the file."""
        ...

    def sibling(self, name: str) -> ByteSource:
        """The file `name` next to this one (split GGUF parts)."""
        ...

    def size(self) -> int | None:
        """The file's length in bytes, or None when the source cannot tell."""
        ...


class LocalFile:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = self.path.name

    def read(self, offset: int, size: int) -> bytes:
        with self.path.open("rb") as f:
            f.seek(offset)
            return f.read(size)

    def sibling(self, name: str) -> LocalFile:
        return LocalFile(self.path.with_name(name))

    def size(self) -> int:
        return self.path.stat().st_size

    def __repr__(self) -> str:
        return f"LocalFile({str(self.path)!r})"


class HubFile:
    """A file in a hub repository, read with HTTP Range requests through huggingface_hub.

    `endpoint` defaults to huggingface_hub's own (HF_ENDPOINT); tests point it at a local
    stand-in. Only the byte ranges the header parser asks for are downloaded.
    """

    def __init__(
        self,
        repo_id: str,
        filename: str,
        revision: str | None = None,
        endpoint: str | None = None,
        token: str | bool | None = None,
        timeout: float = 30.0,
    ):
        self.repo_id = repo_id
        self.filename = filename
        self.revision = revision
        self.endpoint = endpoint
        self.token = token
        self.timeout = timeout
        self.name = filename
        self.requests = 0
        self.bytes_read = 0
        self._size: int | None = None

    @property
    def url(self) -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(
            self.repo_id, self.filename, revision=self.revision, endpoint=self.endpoint
        )

    def read(self, offset: int, size: int) -> bytes:
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        if size <= 0:
            return b""
        no_telemetry()
        headers = build_hf_headers(token=self.token)
        headers["Range"] = f"bytes={offset}-{offset + size - 1}"
        resp = get_session().get(
            self.url, headers=headers, follow_redirects=True, timeout=self.timeout
        )
        self.requests += 1
        self._note_size(resp)
        if resp.status_code == 416:  # range starts past the end of the file
            return b""
        hf_raise_for_status(resp)
        data = resp.content
        if resp.status_code == 200:
            # The server ignored Range and sent the whole file; keep only what was asked.
            data = data[offset : offset + size]
        self.bytes_read += len(data)
        return data[:size]

    def size(self) -> int | None:
        """From the Content-Range of a read (every 206 answer carries the total); asks for
        one byte when nothing was read yet."""
        if self._size is None:
            self.read(0, 1)
        return self._size

    def _note_size(self, resp) -> None:
        total = resp.headers.get("Content-Range", "").rpartition("/")[2]
        if total.isdigit():
            self._size = int(total)
        elif resp.status_code == 200 and resp.headers.get("Content-Length", "").isdigit():
            # the server ignored Range and sent the whole file
            self._size = int(resp.headers["Content-Length"])

    def sibling(self, name: str) -> HubFile:
        folder = self.filename.rsplit("/", 1)[0] + "/" if "/" in self.filename else ""
        return HubFile(
            self.repo_id, folder + name, self.revision, self.endpoint, self.token, self.timeout
        )

    def __repr__(self) -> str:
        return f"HubFile({self.repo_id!r}, {self.filename!r})"


def split_part_names(name: str) -> list[str] | None:
    """['m-00001-of-00003.gguf', ...] for a split GGUF part's name; None if not split."""
    m = _SPLIT.match(name.rsplit("/", 1)[-1])
    if not m:
        return None
    count = int(m["count"])
    return [f"{m['stem']}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]
