"""The person's Hugging Face token: in the OS keyring where one works, else a 0600 file.

Never in settings, never in a log, never on a command line (the download child gets it in its
environment). HF_TOKEN in the environment wins over anything stored.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from layerlab.core.atomic_file import write_atomic

SERVICE = "layerlab"
ACCOUNT = "huggingface-token"


def _keyring():
    """The keyring module when it is installed and has a usable backend; else None."""
    try:
        import keyring
        from keyring.backends.fail import Keyring as FailKeyring
    except Exception:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:
        return None
    if isinstance(backend, FailKeyring) or "fail" in type(backend).__module__:
        return None
    return keyring


class TokenStore:
    def __init__(self, folder: Path, use_keyring: bool = True):
        self.file = Path(folder) / "token"
        self._use_keyring = use_keyring

    @property
    def where(self) -> str:
        """Where a saved token lives, for the person: 'the system keyring' or the file."""
        if os.environ.get("HF_TOKEN"):
            return "the HF_TOKEN environment variable"
        return "the system keyring" if self._ring() else str(self.file)

    def _ring(self):
        return _keyring() if self._use_keyring else None

    def get(self) -> str | None:
        env = os.environ.get("HF_TOKEN", "").strip()
        if env:
            return env
        ring = self._ring()
        if ring is not None:
            with contextlib.suppress(Exception):
                value = ring.get_password(SERVICE, ACCOUNT)
                if value:
                    return value
        try:
            return self.file.read_text().strip() or None
        except OSError:
            return None

    def set(self, token: str) -> str:
        """Keep `token`; returns where it went, in words."""
        token = token.strip()
        ring = self._ring()
        if ring is not None:
            try:
                ring.set_password(SERVICE, ACCOUNT, token)
                with contextlib.suppress(OSError):
                    self.file.unlink()
                return "the system keyring"
            except Exception:
                pass
        write_atomic(self.file, token, mode=0o600)
        return str(self.file)

    def clear(self) -> None:
        ring = self._ring()
        if ring is not None:
            with contextlib.suppress(Exception):
                ring.delete_password(SERVICE, ACCOUNT)
        with contextlib.suppress(OSError):
            self.file.unlink()
