"""The person's settings, in a JSON file under the platform's config dir, validated on load
and written atomically. Secrets never go here (see the cluster's secret store)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import platformdirs

from layerlab.core.endpoint import BadAddress, Endpoint


@dataclass
class SavedWorker:
    address: str
    enabled: bool = True


@dataclass
class Settings:
    model_path: str = ""  # empty: the bundled demo model
    n_ctx: int = 4096
    workers: list[SavedWorker] = field(default_factory=list)
    problems: list[str] = field(default_factory=list, repr=False)  # what load() had to drop

    @staticmethod
    def default_path() -> Path:
        return Path(platformdirs.user_config_dir("layerlab")) / "settings.json"

    @classmethod
    def load(cls, path: Path | None = None) -> Settings:
        path = path or cls.default_path()
        s = cls()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return s
        except (OSError, ValueError) as e:
            s.problems.append(f"Settings file {path} could not be read ({e}); using defaults.")
            return s
        if not isinstance(raw, dict):
            s.problems.append(f"Settings file {path} is not a JSON object; using defaults.")
            return s
        if isinstance(raw.get("model_path"), str):
            s.model_path = raw["model_path"]
        if isinstance(raw.get("n_ctx"), int) and 0 < raw["n_ctx"] <= 1 << 20:
            s.n_ctx = raw["n_ctx"]
        for w in raw.get("workers", []) if isinstance(raw.get("workers"), list) else []:
            try:
                addr = str(Endpoint.parse(str(w.get("address", ""))))
                s.workers.append(SavedWorker(addr, bool(w.get("enabled", True))))
            except (BadAddress, AttributeError) as e:
                s.problems.append(f"Dropped a saved worker: {e}")
        return s

    def save(self, path: Path | None = None) -> None:
        path = path or self.default_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "problems"}
        data["workers"] = [asdict(w) for w in self.workers]
        # Write a temp file beside it and rename: a crash never leaves half a settings file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".settings-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
