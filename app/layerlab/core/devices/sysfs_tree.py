"""Read-only access to a sysfs tree: the real /sys, a copy in a temp dir, or a recording.

Probes read through this so a recorded machine plays back through the same code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class SysfsTree(Protocol):
    def read(self, rel: str) -> str | None:
        """A file's text, stripped; None if absent or unreadable."""

    def list(self, rel: str) -> list[str]:
        """Names inside a directory, sorted; [] if absent."""


class DirTree:
    """A directory laid out like /sys (the default root is the real one)."""

    def __init__(self, root: str | os.PathLike = "/sys"):
        self.root = Path(root)

    def read(self, rel: str) -> str | None:
        try:
            return (self.root / rel).read_text(errors="replace").strip()
        except OSError:  # absent, permission, or a driver refusing the read (EINVAL, EBUSY)
            return None

    def list(self, rel: str) -> list[str]:
        try:
            return sorted(os.listdir(self.root / rel))
        except OSError:
            return []


class DictTree:
    """A recording: {relative path: file text}."""

    def __init__(self, files: dict[str, str]):
        self.files = files

    def read(self, rel: str) -> str | None:
        value = self.files.get(rel)
        return None if value is None else value.strip()

    def list(self, rel: str) -> list[str]:
        prefix = rel.rstrip("/") + "/"
        return sorted(
            {k[len(prefix) :].split("/", 1)[0] for k in self.files if k.startswith(prefix)}
        )


def write_tree(files: dict[str, str], root: str | os.PathLike) -> Path:
    """Lay a recording out as real files (tests: a fake /sys in tmp_path)."""
    root = Path(root)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text if text.endswith("\n") else text + "\n")
    return root


def record_tree(tree: SysfsTree, rels: list[str]) -> dict[str, str]:
    """The files among `rels` that exist, as a recording."""
    out = {}
    for rel in rels:
        value = tree.read(rel)
        if value is not None:
            out[rel] = value
    return out
