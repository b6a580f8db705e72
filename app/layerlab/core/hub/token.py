"""The person's Hugging Face token: in the OS keyring where one works, else a 0600 file.

Never in settings, never in a log, never on a command line (the download child gets it in its
environment). HF_TOKEN in the environment wins over anything stored.
"""

from __future__ import annotations

import os
from pathlib import Path

from layerlab.core.hub.problems import HubProblem
from layerlab.core.secret_store import SecretStore, SecretUnreachable

ACCOUNT = "huggingface-token"


class TokenStore:
    def __init__(self, folder: Path, use_keyring: bool = True):
        self.file = Path(folder) / "token"
        self._secret = SecretStore(self.file, ACCOUNT, use_keyring)

    @property
    def where(self) -> str:
        """Where a saved token lives, for the person: 'the system keyring' or the file."""
        if os.environ.get("HF_TOKEN"):
            return "the HF_TOKEN environment variable"
        return self._secret.where

    def get(self) -> str | None:
        """The token, None when none is kept. A keyring that does not answer is a
        HubProblem, not "no token": gated repos would fail as if the person had none."""
        env = os.environ.get("HF_TOKEN", "").strip()
        if env:
            return env
        try:
            return self._secret.get()
        except SecretUnreachable as e:
            raise HubProblem(
                "other",
                f"Your Hugging Face token could not be read: {e.strerror or e}. Unlock the "
                "keyring (or restart it) and try again.",
            ) from e

    def set(self, token: str) -> str:
        """Keep `token`; returns where it went, in words."""
        return self._secret.set(token)

    def clear(self) -> None:
        try:
            self._secret.clear()
        except SecretUnreachable as e:
            raise HubProblem(
                "other",
                f"The token could not be removed from the keyring: {e.strerror or e}. It is "
                "still kept there; try again once the keyring answers.",
            ) from e
