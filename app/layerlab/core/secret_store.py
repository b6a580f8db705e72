"""One secret (the hub token, the API key): in the OS keyring where one works, else in a
0600 file written atomically. Never in settings, never in a log.

A backend that cannot keep secrets (the "fail" and "null" ones, an absent D-Bus secret
service) means the file. A keyring that is there but does not answer (its daemon stopped,
killed, or waiting for a password nobody types) is not taken for "no secret": a read says so
(SecretUnreachable), so the API key is not replaced by a new one behind the person's apps.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from layerlab.core.atomic_file import write_atomic

SERVICE = "layerlab"
KEYRING_WORDS = "the system keyring"
# A locked keyring asks for its password on the desktop and answers once it is typed: long
# enough for a person at that prompt, short enough that a stopped daemon is not a hang.
KEYRING_WAIT_S = 30.0

T = TypeVar("T")


class SecretUnreachable(OSError):
    """The keyring is there but gave no answer: the secret may be in it."""


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


# Calls whose caller gave up on them, still waiting for the keyring: while one is, the keyring
# is taken as not answering, at once, not after another KEYRING_WAIT_S and another thread.
_given_up: list[threading.Thread] = []
_given_up_lock = threading.Lock()


def _still_unanswered() -> bool:
    with _given_up_lock:
        _given_up[:] = [t for t in _given_up if t.is_alive()]  # answered since: gone
        return bool(_given_up)


def _asked(call: Callable[[], T], wait_s: float) -> T:
    """`call()` on a thread of its own, given `wait_s`: a D-Bus call to a stopped daemon
    never returns, and the caller (the API switch, the models screen) must. A thread left
    waiting is a daemon thread: it ends with the process, or when the keyring answers it.
    Until it does, later calls say so at once: a stopped keyring left one waiting thread
    per call, and the person waited wait_s for each."""
    if _still_unanswered():
        raise SecretUnreachable(
            "the system keyring has not answered an earlier request yet "
            "(is it locked and waiting for its password?)"
        )
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as e:  # handed to the caller, who says it in words
            box["error"] = e

    t = threading.Thread(target=run, name="keyring-call", daemon=True)
    t.start()
    t.join(wait_s)
    if t.is_alive():
        with _given_up_lock:
            _given_up.append(t)
        raise SecretUnreachable(
            f"the system keyring did not answer within {wait_s:.0f} s "
            "(is it locked and waiting for its password?)"
        )
    if "error" in box:
        e = box["error"]
        raise SecretUnreachable(f"the system keyring could not be read: {e}") from e
    return box.get("value")


class SecretStore:
    def __init__(self, file: Path, account: str, use_keyring: bool = True):
        self.file = Path(file)
        self.account = account
        self._use_keyring = use_keyring
        self.wait_s = KEYRING_WAIT_S

    def _ring(self) -> Any | None:
        return working_keyring() if self._use_keyring else None

    @property
    def where(self) -> str:
        """Where a kept secret lives, in words: 'the system keyring' or the file's path."""
        if self.file.exists():
            return str(self.file)
        return KEYRING_WORDS if self._ring() is not None else str(self.file)

    def get(self) -> str | None:
        """The secret, or None when none is kept. Raises SecretUnreachable when the keyring
        does not answer (it may hold the secret)."""
        # The file first: a secret is only in the file when its last `set` could not reach
        # the keyring (a keyring write removes the file), so the file is the newer copy.
        try:
            found = self.file.read_text().strip() or None
        except (OSError, UnicodeDecodeError):
            found = None
        ring = self._ring()
        if found:
            if ring is not None:
                # into the keyring now that it works (a key kept before keyring was there,
                # or while it was down): out of the plain file
                with contextlib.suppress(OSError):
                    _asked(lambda: ring.set_password(SERVICE, self.account, found), self.wait_s)
                    self.file.unlink()
            return found
        if ring is None:
            return None
        return _asked(lambda: ring.get_password(SERVICE, self.account), self.wait_s) or None

    def set(self, value: str) -> str:
        """Keep `value`; returns where it went, in words. Raises OSError when it can be kept
        nowhere."""
        value = value.strip()
        ring = self._ring()
        if ring is not None:
            try:
                _asked(lambda: ring.set_password(SERVICE, self.account, value), self.wait_s)
                with contextlib.suppress(OSError):
                    self.file.unlink()  # one place only: an older file copy goes
                return KEYRING_WORDS
            except OSError:
                pass  # a locked, stopped or broken keyring: the file below
        write_atomic(self.file, value + "\n", mode=0o600)
        return str(self.file)

    def clear(self) -> None:
        """Forget the secret everywhere. Raises SecretUnreachable when the keyring does not
        answer: the secret is still in it, and the person must hear that."""
        with contextlib.suppress(OSError):
            self.file.unlink()
        ring = self._ring()
        if ring is None:
            return

        def forget() -> None:
            from keyring.errors import PasswordDeleteError

            with contextlib.suppress(PasswordDeleteError):  # none kept: nothing to forget
                ring.delete_password(SERVICE, self.account)

        _asked(forget, self.wait_s)
