"""The person's Hugging Face token: in the OS keyring where one works, else a 0600 file.

Never in settings, never in a log, never on a command line (the download child gets it in its
environment). HF_TOKEN in the environment wins over anything stored.
"""

from __future__ import annotations

import os
from pathlib import Path

from layerlab.core.secret_store import SecretStore

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
        env = os.environ.get("HF_TOKEN", "").strip()
        return env or self._secret.get()

    def set(self, token: str) -> str:
        """Keep `token`; returns where it went, in words."""
        return self._secret.set(token)

    def clear(self) -> None:
        self._secret.clear()
