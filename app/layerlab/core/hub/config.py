"""Where the hub is and how LayerLab talks to it: endpoint, cache folder, offline switch.

Read once, when a ModelHub is made, from the same environment huggingface_hub honours
(HF_ENDPOINT, HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE), and passed explicitly to every
huggingface_hub call: that library reads its environment at import, and a hub made later
(tests, a mirror the person sets) must not depend on import order.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

# one switch for every huggingface_hub use in core (re-exported for the hub's modules)
from layerlab.core.hf_telemetry import no_telemetry  # noqa: F401

DEFAULT_ENDPOINT = "https://huggingface.co"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "on", "yes", "true"}


def default_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home) / "hub"


def default_own_folder() -> Path:
    """LayerLab's own models folder (files added with Open GGUF… or copied in by hand)."""
    return Path(platformdirs.user_data_dir("layerlab")) / "models"


@dataclass
class HubConfig:
    endpoint: str = field(
        default_factory=lambda: os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")
    )
    cache_dir: Path = field(default_factory=default_cache_dir)
    own_folder: Path = field(default_factory=default_own_folder)
    state_dir: Path = field(
        default_factory=lambda: Path(platformdirs.user_config_dir("layerlab")) / "hub"
    )
    offline: bool = field(default_factory=lambda: _truthy(os.environ.get("HF_HUB_OFFLINE")))
    # disk space kept free beyond a download's size: the larger of these
    margin_bytes: int = 512 * 1024 * 1024
    margin_fraction: float = 0.02

    @property
    def host(self) -> str:
        """'huggingface.co', or the mirror's host, for messages."""
        return self.endpoint.split("://", 1)[-1].split("/", 1)[0]

    def margin_for(self, size: int) -> int:
        return max(self.margin_bytes, int(size * self.margin_fraction))

    # -- the person's choices on the Models screen: a mirror and the offline switch ------
    @property
    def choices_file(self) -> Path:
        return self.state_dir / "choices.json"

    def save_choices(self) -> None:
        """Keep the endpoint and the offline switch for the next start (never the token)."""
        from layerlab.core.atomic_file import write_atomic

        data = {"endpoint": self.endpoint, "offline": self.offline}
        with contextlib.suppress(OSError):
            write_atomic(self.choices_file, json.dumps(data, indent=1))

    def apply_saved(self) -> None:
        """What the person chose last time; HF_ENDPOINT and HF_HUB_OFFLINE in the environment
        win (they are how a person or a script says it for one run)."""
        try:
            data = json.loads(self.choices_file.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(data, dict):
            return
        endpoint = data.get("endpoint")
        if isinstance(endpoint, str) and endpoint and not os.environ.get("HF_ENDPOINT"):
            self.endpoint = endpoint.rstrip("/")
        if data.get("offline") is True:
            self.offline = True
