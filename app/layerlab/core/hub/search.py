"""Find GGUF repos on the hub: what the person typed (words, a repo id, a hub URL) to rows."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import datetime

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
EXPAND = ["downloads", "likes", "lastModified", "gated", "gguf", "private"]


@dataclass(frozen=True)
class RepoRow:
    """One search result, as the Models screen lists it."""

    repo_id: str
    downloads: int = 0
    likes: int = 0
    updated: datetime | None = None
    parameters: int = 0  # from the hub's GGUF metadata; 0 when it does not say
    gated: bool = False

    @property
    def parameters_text(self) -> str:
        return parameters_text(self.parameters)

    @property
    def updated_text(self) -> str:
        return self.updated.strftime("%Y-%m-%d") if self.updated else ""


def parameters_text(n: int) -> str:
    if n <= 0:
        return ""
    if n >= 1e9:
        return f"{n / 1e9:.1f}B".replace(".0B", "B")
    return f"{n / 1e6:.0f}M"


def repo_id_in(text: str, host: str = "huggingface.co") -> str | None:
    """'owner/repo' when the person pasted a repo id or a hub URL (any page of the repo)."""
    text = text.strip()
    m = re.match(r"^(?:https?://)?(?:[\w.-]+)(?::\d+)?/([\w.-]+/[\w.-]+)(?:/.*)?$", text)
    if m and ("://" in text or text.startswith(host)):
        return m.group(1)
    if ":" in text:  # REPO:QUANT (llama.cpp's -hf convention)
        text = text.split(":", 1)[0]
    return text if _REPO_ID.match(text) else None


def row_from_info(info) -> RepoRow:
    """A RepoRow from huggingface_hub's ModelInfo."""
    gguf = getattr(info, "gguf", None) or {}
    gated = getattr(info, "gated", None)
    return RepoRow(
        repo_id=info.id,
        downloads=int(getattr(info, "downloads", 0) or 0),
        likes=int(getattr(info, "likes", 0) or 0),
        updated=getattr(info, "last_modified", None),
        parameters=int(gguf.get("total", 0) or 0) if isinstance(gguf, dict) else 0,
        gated=bool(gated) and gated is not False,
    )


def search(api, text: str, limit: int = 40, host: str = "huggingface.co") -> list[RepoRow]:
    """GGUF repos for `text`, most downloaded first; a pasted repo id or URL gives that repo
    first (its info), then what a search for it finds."""
    from huggingface_hub import errors as hf

    rows: list[RepoRow] = []
    direct = repo_id_in(text, host)
    if direct:
        # not a repo after all, or gated: the search below still finds it
        with contextlib.suppress(hf.RepositoryNotFoundError, hf.GatedRepoError):
            rows.append(row_from_info(api.model_info(direct, expand=EXPAND)))
        query = direct
    else:
        query = " ".join(text.split())
    seen = {r.repo_id for r in rows}
    for info in api.list_models(
        search=query or None, filter="gguf", sort="downloads", limit=limit, expand=EXPAND
    ):
        if info.id not in seen:
            rows.append(row_from_info(info))
            seen.add(info.id)
    return rows
