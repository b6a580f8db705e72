"""A repo's GGUF files grouped by quant: split parts added up, projector files set aside."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from layerlab.core.gguf import split_part_names

# Quant tags as llama.cpp and the big uploaders write them in file names
_QUANT = re.compile(
    r"(?<![A-Za-z0-9])(I?Q\d+(?:_[0-9A-Z]+)*|F16|F32|BF16|FP16|MXFP4(?:_MOE)?|TQ\d_\d)(?=[-.]|$)",
    re.IGNORECASE,
)
DEFAULT_QUANT = "Q4_K_M"


@dataclass(frozen=True)
class HubFileEntry:
    path: str
    size: int
    sha256: str | None  # the LFS sha256 from the tree; None for a non-LFS file


@dataclass
class Quant:
    """One downloadable model: a single GGUF, or all parts of a split one."""

    tag: str  # 'Q4_K_M', as written in the file name (upper case)
    files: list[HubFileEntry] = field(default_factory=list)  # in part order

    @property
    def first(self) -> str:
        """The file llama.cpp loads (the first part of a split)."""
        return self.files[0].path

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def parts(self) -> int:
        return len(self.files)


def quant_tag(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    name = re.sub(r"-\d{5}-of-\d{5}\.gguf$", ".gguf", name)
    found = _QUANT.findall(name.removesuffix(".gguf"))
    return found[-1].upper() if found else name.removesuffix(".gguf")


def _is_projector(path: str) -> bool:
    name = path.rsplit("/", 1)[-1].lower()
    return name.startswith("mmproj") or "-mmproj" in name or name.startswith("imatrix")


def group_quants(entries: list[HubFileEntry]) -> list[Quant]:
    """Every model in the tree, smallest first. A split model counts once, when all its parts
    are there; projector (mmproj) and imatrix files are not models."""
    by_path = {e.path: e for e in entries if e.path.endswith(".gguf")}
    quants: list[Quant] = []
    taken: set[str] = set()
    for path in sorted(by_path):
        if path in taken or _is_projector(path):
            continue
        names = split_part_names(path)
        if names is not None:
            folder = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
            parts = [folder + n for n in names]
            if path != parts[0] or not all(p in by_path for p in parts):
                continue  # reached from its first part, or incomplete on the hub
            taken.update(parts)
            quants.append(Quant(quant_tag(path), [by_path[p] for p in parts]))
        else:
            taken.add(path)
            quants.append(Quant(quant_tag(path), [by_path[path]]))
    quants.sort(key=lambda q: q.size)
    return quants


def pick(quants: list[Quant], tag: str | None) -> Quant | None:
    """The quant for `tag` (case-insensitive, llama.cpp's -hf convention; Q4_K_M when None).
    With no tag and no Q4_K_M, the first Q4 quant, else the smallest model."""
    want = (tag or DEFAULT_QUANT).upper()
    for q in quants:
        if q.tag == want:
            return q
    if tag:
        return None
    q4 = [q for q in quants if q.tag.startswith("Q4")]
    return q4[0] if q4 else (quants[0] if quants else None)


def list_quants(api, repo_id: str, revision: str | None = None) -> list[Quant]:
    """The repo's quants from its tree (sizes and LFS sha256, one listing)."""
    from huggingface_hub.hf_api import RepoFile

    entries = []
    for item in api.list_repo_tree(repo_id, recursive=True, expand=True, revision=revision):
        if isinstance(item, RepoFile):
            sha = item.lfs.sha256 if item.lfs is not None else None
            entries.append(HubFileEntry(item.path, int(item.size or 0), sha))
    return group_quants(entries)
