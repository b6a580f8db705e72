"""Pairing: a short code shown on the worker, typed once on the head, and certificates pinned.

The code is never sent. Both sides run SPAKE2 (the `spake2` package, as used by
magic-wormhole) with it, so a man in the middle gets one guess per attempt and nothing to
brute-force offline. The SPAKE2 key then authenticates, with HMAC-SHA256 key confirmation
(RFC 9382 section 4), a transcript that binds both certificates' fingerprints: the worker's
as the head saw it in the TLS handshake (a TLS-terminating intruder changes it), and the
head's, which the worker pins. Each side uses a fresh SPAKE2 secret, so replayed messages
from an old exchange derive a different key and fail confirmation.

This module is only the message logic; link_client.py (the head) and link_server.py (the
worker) carry the messages inside TLS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

# cryptography's KDF and spake2 are imported where they are used (with x509 in identity.py,
# ~60 ms): the window's start imports this module, and pairs nothing.


PAIRING_VERSION = 1
ID_HEAD = b"layerlab-head"
ID_WORKER = b"layerlab-worker"
CODE_DIGITS = 6
MAX_FAILED_ATTEMPTS = 3  # per code; then the worker shows a new one


class PairingFailed(Exception):
    """Pairing did not succeed; the message says why in the person's words."""


def new_code() -> str:
    """'482-913': six digits, shown on the worker, typed once on the head."""
    n = secrets.randbelow(10**CODE_DIGITS)
    digits = f"{n:0{CODE_DIGITS}d}"
    return f"{digits[:3]}-{digits[3:]}"


def normalise_code(text: str) -> str:
    digits = "".join(ch for ch in text if ch.isdigit())
    if len(digits) != CODE_DIGITS:
        raise PairingFailed(f"A pairing code has {CODE_DIGITS} digits, like 482-913.")
    return f"{digits[:3]}-{digits[3:]}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise PairingFailed("The other side sent a malformed pairing message.")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise PairingFailed("The other side sent a malformed pairing message.") from None


def _transcript(worker_fp: str, head_fp: str, msg_head: bytes, msg_worker: bytes) -> bytes:
    h = hashlib.sha256()
    for part in (
        b"layerlab-pair-v%d" % PAIRING_VERSION,
        worker_fp.encode(),
        head_fp.encode(),
        msg_head,
        msg_worker,
    ):
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


def _confirm_keys(key: bytes, transcript: bytes) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=64,
        salt=transcript,
        info=b"layerlab pairing key confirmation",
    ).derive(key)
    return okm[:32], okm[32:]  # (head's, worker's)


def _mac(key: bytes, role: bytes, transcript: bytes) -> bytes:
    return hmac.new(key, role + transcript, hashlib.sha256).digest()


class HeadPairing:
    """The head's half: start() -> first message; finish(answer) -> confirmation to send."""

    def __init__(self, code: str, worker_fp: str, head_fp: str):
        from spake2 import SPAKE2_A

        self._spake = SPAKE2_A(normalise_code(code).encode(), idA=ID_HEAD, idB=ID_WORKER)
        self.worker_fp = worker_fp
        self.head_fp = head_fp
        self._msg: bytes = b""

    def start(self) -> dict:
        self._msg = self._spake.start()
        return {"spake": _b64(self._msg)}

    def finish(self, answer: dict) -> dict:
        from spake2.spake2 import SPAKEError

        msg_worker = _unb64(answer.get("spake"))
        try:
            key = self._spake.finish(msg_worker)
        except (SPAKEError, ValueError):
            raise PairingFailed("The worker sent a malformed pairing message.") from None
        t = _transcript(self.worker_fp, self.head_fp, self._msg, msg_worker)
        k_head, k_worker = _confirm_keys(key, t)
        if not hmac.compare_digest(_mac(k_worker, b"worker", t), _unb64(answer.get("confirm"))):
            raise PairingFailed(
                "The pairing code did not match. Check the code the worker shows now (it changes "
                "after a few wrong tries) and type it again."
            )
        return {"confirm": _b64(_mac(k_head, b"head", t))}


class WorkerPairing:
    """The worker's half of one attempt: answer(first) -> reply; check(confirmation)."""

    def __init__(self, code: str, worker_fp: str, head_fp: str):
        from spake2 import SPAKE2_B

        self._spake = SPAKE2_B(code.encode(), idA=ID_HEAD, idB=ID_WORKER)
        self.worker_fp = worker_fp
        self.head_fp = head_fp
        self._k_head = b""
        self._t = b""

    def answer(self, first: dict) -> dict:
        from spake2.spake2 import SPAKEError

        msg_head = _unb64(first.get("spake"))
        msg_worker = self._spake.start()
        try:
            key = self._spake.finish(msg_head)
        except (SPAKEError, ValueError):
            raise PairingFailed("malformed SPAKE2 message") from None
        self._t = _transcript(self.worker_fp, self.head_fp, msg_head, msg_worker)
        self._k_head, k_worker = _confirm_keys(key, self._t)
        return {"spake": _b64(msg_worker), "confirm": _b64(_mac(k_worker, b"worker", self._t))}

    def check(self, confirmation: dict) -> None:
        got = _unb64(confirmation.get("confirm"))
        if not self._k_head or not hmac.compare_digest(_mac(self._k_head, b"head", self._t), got):
            raise PairingFailed("wrong pairing code")


@dataclass
class CodeState:
    code: str
    shown_at: float
    failures: int = 0


class PairingCode:
    """The worker's current code: one use, and replaced after MAX_FAILED_ATTEMPTS wrong tries.

    Attempts are serialised (one at a time) and a wrong one costs a second, so guessing
    online is slow as well as short-lived.
    """

    def __init__(self, on_change=None):
        self._lock = threading.Lock()
        self._attempt = threading.Lock()
        self._on_change = on_change
        self._state = CodeState(new_code(), time.time())

    @property
    def code(self) -> str:
        with self._lock:
            return self._state.code

    def attempt(self) -> threading.Lock:
        return self._attempt

    def _rotate(self) -> None:
        self._state = CodeState(new_code(), time.time())
        if self._on_change:
            self._on_change(self._state.code)

    def succeeded(self) -> None:
        with self._lock:
            self._rotate()

    def failed(self) -> None:
        with self._lock:
            self._state.failures += 1
            if self._state.failures >= MAX_FAILED_ATTEMPTS:
                self._rotate()
        time.sleep(1.0)
