"""Every fault the hub can meet, said in the person's words (never a traceback, never a scrap
of an HTTP library's message). `HubProblem.kind` is a small closed set a view can match on."""

from __future__ import annotations

import contextlib
import errno
from typing import Literal

ProblemKind = Literal[
    "gated",  # 401/403: no token, or a token without access
    "not_found",  # 404: the repo or the file is gone
    "rate_limited",  # 429: the hub asks us to slow down (retried with backoff)
    "server",  # 5xx
    "dropped",  # the connection broke mid-file (resume continues where it stopped)
    "no_network",  # DNS failure, no route, refused, timed out
    "disk_full",  # before starting (not enough space) or mid-download (ENOSPC)
    "corrupt",  # sha256 mismatch: the file was discarded
    "no_gguf",  # the repo holds no GGUF model file
    "unreadable",  # a header the planner cannot read
    "offline",  # the offline switch (or HF_HUB_OFFLINE) is on
    "other",
]
RETRYABLE: frozenset[str] = frozenset({"rate_limited", "server", "dropped", "no_network"})


class HubProblem(Exception):
    """What went wrong, in words; `kind` says which kind of fault it is."""

    def __init__(self, kind: ProblemKind, message: str):
        super().__init__(message)
        self.kind: ProblemKind = kind
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


def offline_problem() -> HubProblem:
    return HubProblem(
        "offline",
        "LayerLab is set to work offline, so it does not ask Hugging Face. Turn the offline "
        "switch off (and unset HF_HUB_OFFLINE) to search and download; the library still works.",
    )


def words_for(error: BaseException, what: str, host: str = "the hub") -> HubProblem:
    """`error` from huggingface_hub, httpx or the disk while doing `what` ('download
    bartowski/X/Q4_K_M.gguf'), as a HubProblem in words."""
    if isinstance(error, HubProblem):
        return error
    from huggingface_hub import errors as hf

    status = _status(error)
    if isinstance(error, hf.GatedRepoError) or status in (401, 403):
        return HubProblem(
            "gated",
            f"Cannot {what}: the repository is gated or private. Open its page on Hugging Face, "
            "accept its terms (or ask its owner for access), then paste a token that has "
            "access under Models > Token (or set HF_TOKEN).",
        )
    if isinstance(error, hf.RepositoryNotFoundError | hf.RevisionNotFoundError):
        return HubProblem(
            "not_found", f"Cannot {what}: there is no such repository on {host} (or it is private)."
        )
    if isinstance(error, hf.EntryNotFoundError) or status == 404:
        return HubProblem("not_found", f"Cannot {what}: the file is no longer in the repository.")
    if status == 429:
        return HubProblem(
            "rate_limited",
            f"Cannot {what} right now: {host} says there were too many requests. LayerLab waits "
            "and tries again.",
        )
    if status is not None and status >= 500:
        return HubProblem(
            "server",
            f"Cannot {what}: {host} had a problem of its own (error {status}). Try again in a "
            "few minutes.",
        )
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return HubProblem(
            "disk_full",
            f"Cannot {what}: the disk filled up. The partial file was removed; free some space "
            "and download again.",
        )
    if _is_dropped(error):
        return HubProblem(
            "dropped",
            f"The connection to {host} broke while trying to {what}. Resume continues where "
            "it stopped.",
        )
    if _is_no_network(error):
        return HubProblem(
            "no_network",
            f"Cannot {what}: {host} cannot be reached (no network, or its name does not "
            "resolve). Check the connection, or the mirror set in HF_ENDPOINT.",
        )
    if status is not None:
        return HubProblem("other", f"Cannot {what}: {host} answered with error {status}.")
    return HubProblem("other", f"Cannot {what}: {_short(error)}")


def _status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def _http_modules() -> list:
    """The HTTP libraries huggingface_hub may use: httpx2 (2.x) or httpx (1.x)."""
    import importlib

    out = []
    for name in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            out.append(importlib.import_module(name))
    return out


def _is_dropped(error: BaseException) -> bool:
    for m in _http_modules():
        if isinstance(error, m.RemoteProtocolError | m.ReadError | m.ReadTimeout):
            return True
    text = str(error)
    # hf_hub_download's own size check after a stream that ended early
    return "Consistency check failed" in text or "peer closed connection" in text


def _is_no_network(error: BaseException) -> bool:
    for m in _http_modules():
        if isinstance(error, m.ConnectError | m.ConnectTimeout | m.NetworkError):
            return True
    return isinstance(error, ConnectionError | TimeoutError)


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
