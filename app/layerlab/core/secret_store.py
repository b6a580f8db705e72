"""One secret (the hub token, the API key): in the OS keyring where one works, else in a
0600 file written atomically. Never in settings, never in a log.

`keyring` is optional: imported lazily, and a missing package or a backend that cannot keep
secrets (the "fail" and "null" ones, a locked or absent D-Bus secret service) means the file.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from layerlab.core.atomic_file import write_atomic

SERVICE = "layerlab"
KEYRING_WORDS = "the system keyring"


def working_keyring() -> Any | None:
    """The `keyring` module when it is installed and has a backend that can keep secrets."""
    try:
        import keyring
        from keyring.backends import fail
    except Exception:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:
        return None
    module = type(backend).__module__.lower()
    if isinstance(backend, fail.Keyring) or "fail" in module or "null" in module:
        return None
    return keyring


class SecretStore:
    def __init__(self, file: Path, account: str, use_keyring: bool = True):
        self.file = Path(file)
        self.account = account
        self._use_keyring = use_keyring

    def _ring(self) -> Any | None:
        return working_keyring() if self._use_keyring else None

    @property
    def where(self) -> str:
        """Where a kept secret lives, in words: 'the system keyring' or the file's path."""
        return KEYRING_WORDS if self._ring() is not None else str(self.file)

    def get(self) -> str | None:
        ring = self._ring()
        if ring is not None:
            with contextlib.suppress(Exception):
                value = ring.get_password(SERVICE, self.account)
                if value:
                    return value
        try:
            return self.file.read_text().strip() or None
        except (OSError, UnicodeDecodeError):
            return None

    def set(self, value: str) -> str:
        """Keep `value`; returns where it went, in words. Raises OSError when it can be kept
        nowhere."""
        value = value.strip()
        ring = self._ring()
        if ring is not None:
            try:
                ring.set_password(SERVICE, self.account, value)
                with contextlib.suppress(OSError):
                    self.file.unlink()  # one place only: an older file copy goes
                return KEYRING_WORDS
            except Exception:
                pass  # a locked or broken keyring: the file below
        write_atomic(self.file, value + "\n", mode=0o600)
        return str(self.file)

    def clear(self) -> None:
        ring = self._ring()
        if ring is not None:
            with contextlib.suppress(Exception):
                ring.delete_password(SERVICE, self.account)
        with contextlib.suppress(OSError):
            self.file.unlink()
