"""The person's settings, in a JSON file under the platform's config dir, validated on load
and written atomically. Secrets never go here (see the cluster's secret store).

A file LayerLab cannot use whole is never a traceback and never costs the worker list: each
field and each saved worker is taken on its own, what cannot be used is named in `problems`,
and the file as it was is kept beside the new one (`settings.json.bad-<time>`) before anything
is written over it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from layerlab.core.atomic_file import write_atomic
from layerlab.core.endpoint import Endpoint

SCHEMA_VERSION = 1


class SavedWorker(BaseModel):
    """A worker the person added: a plain RPC worker by its RPC address, a paired one by its
    link address."""

    model_config = ConfigDict(extra="ignore")

    address: str = Field(description="host:port as the person knows it")
    enabled: bool = Field(True, description="whether loads use it")

    def __init__(self, address: str | None = None, enabled: bool | None = None, /, **data: Any):
        # SavedWorker("10.0.0.5:50052", False), as the Workers list builds them
        if address is not None:
            data["address"] = address
        if enabled is not None:
            data["enabled"] = enabled
        super().__init__(**data)

    @field_validator("address")
    @classmethod
    def _an_address(cls, v: str) -> str:
        return str(Endpoint.parse(v))


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    schema_version: int = Field(SCHEMA_VERSION, description="the settings file's format")
    model_path: str = Field("", description="the model loaded at start; empty: the demo model")
    n_ctx: int = Field(4096, gt=0, le=1 << 20, description="context size the person chose")
    workers: list[SavedWorker] = Field(default_factory=list, description="the Workers list")
    reload_automatically: bool = Field(
        True,
        description="after a lost worker or a failed engine, load again by itself "
        "(without the lost worker) instead of waiting for a click",
    )
    use_returning_workers: bool = Field(
        False,
        description="a lost worker that answers steadily again is put back by itself at the "
        "next idle moment; off: the window offers it",
    )
    cluster_panel_open: bool = Field(True, description="the window's cluster panel is shown")
    cluster_panel_width: int = Field(
        560, ge=200, le=4000, description="the cluster panel's width in the window, in pixels"
    )
    welcomed: bool = Field(False, description="the first-start welcome has been shown")
    _problems: list[str] = PrivateAttr(default_factory=list)  # what load() had to drop or set aside

    @property
    def problems(self) -> list[str]:
        return self._problems

    @staticmethod
    def default_path() -> Path:
        return Path(platformdirs.user_config_dir("layerlab")) / "settings.json"

    @classmethod
    def load(cls, path: Path | None = None) -> Settings:
        path = path or cls.default_path()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except (OSError, UnicodeDecodeError) as e:
            return cls._fresh(path, f"could not be read ({e})")
        try:
            raw = json.loads(text)
        except ValueError as e:
            return cls._fresh(path, f"is not valid JSON ({e})")
        if not isinstance(raw, dict):
            return cls._fresh(path, "does not hold settings")
        return cls._salvage(path, raw)

    @classmethod
    def _fresh(cls, path: Path, why: str) -> Settings:
        s = cls()
        kept = _set_aside(path, "bad")
        s._problems.append(
            f"Your settings file {why}; LayerLab started with default settings. "
            + (f"The old file is kept as {kept}." if kept else "")
        )
        return s

    @classmethod
    def _salvage(cls, path: Path, raw: dict) -> Settings:
        """Take every field that is right on its own; name each one that is not."""
        problems: list[str] = []
        version = raw.get("schema_version", 0)
        if isinstance(version, int) and version > SCHEMA_VERSION:
            kept = _set_aside(path, f"newer-v{version}")
            problems.append(
                "Your settings were written by a newer LayerLab; the settings this version "
                f"knows were kept (the file as it was is kept as {kept})."
            )
        s = cls()
        for name, info in cls.model_fields.items():
            if name in ("schema_version", "workers") or name not in raw:
                continue
            try:
                setattr(s, name, raw[name])
            except ValidationError:
                problems.append(
                    f"The setting '{name}' ({raw[name]!r}) is not valid; "
                    f"using {getattr(s, name)!r} ({info.description})."
                )
        workers = raw.get("workers", [])
        if not isinstance(workers, list):
            problems.append("The saved worker list was not a list and was dropped.")
            workers = []
        for w in workers:
            try:
                s.workers.append(SavedWorker.model_validate(w))
            except ValidationError as e:
                problems.append(f"A saved worker could not be used and was dropped ({_why(e)}).")
        if problems and not any("newer LayerLab" in p for p in problems):
            kept = _set_aside(path, "bad")
            if kept:
                problems.append(f"The settings file as it was is kept as {kept}.")
        s._problems.extend(problems)
        return s

    def save(self, path: Path | None = None) -> None:
        path = path or self.default_path()
        data = self.model_dump()
        data["schema_version"] = SCHEMA_VERSION
        write_atomic(path, json.dumps(data, indent=2))


def _why(e: ValidationError) -> str:
    first = e.errors()[0]
    return str(first.get("msg", e)).removeprefix("Value error, ")


def _set_aside(path: Path, tag: str) -> Path | None:
    """Keep a copy of the settings file as it was, beside it, before it is replaced."""
    target = path.with_name(f"{path.name}.{tag}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        shutil.copy2(path, target)
    except OSError:
        return None
    return target
