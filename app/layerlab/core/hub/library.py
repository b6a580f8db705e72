"""Models on disk: the Hugging Face cache (shared with other tools), LayerLab's own folder and
the folders the person added (an LM Studio or llama.cpp models folder), plus single files
opened with Open GGUF…. Each model shows its facts, read from its header; Delete frees the
space. Only whole files are listed: the cache lists a file once huggingface_hub linked it into
a snapshot, which the download manager does only after the sha256 matched.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from layerlab.core.atomic_file import write_atomic
from layerlab.core.gguf import (
    GGUFError,
    LocalFile,
    check_model_file,
    read_header,
    split_part_names,
)
from layerlab.core.hub.config import HubConfig
from layerlab.core.hub.quants import quant_tag
from layerlab.core.hub.search import parameters_text
from layerlab.core.units import format_bytes


@dataclass(frozen=True)
class ModelFactsRow:
    """What the library shows of a model, from its header."""

    architecture: str = ""
    parameters: int = 0
    quant: str = ""
    n_ctx_train: int = 0
    chat_template: bool = False
    problem: str = ""  # the header cannot be read, or the file is not whole

    def text(self) -> str:
        if self.problem:
            return self.problem
        bits = [self.architecture, parameters_text(self.parameters), self.quant]
        if self.n_ctx_train:
            bits.append(f"{self.n_ctx_train:,} ctx")
        bits.append("chat template" if self.chat_template else "no chat template")
        return " · ".join(b for b in bits if b)


@dataclass(frozen=True)
class LibraryModel:
    path: str  # the file llama.cpp loads (a split model's first part)
    name: str  # 'owner/repo · Q4_K_M' for the cache, the file name elsewhere
    where: str  # 'Hugging Face cache', 'LayerLab folder', or the added folder
    size: int  # all parts
    parts: tuple[str, ...]  # every file of the model
    repo_id: str = ""
    tag: str = ""

    @property
    def size_text(self) -> str:
        return format_bytes(self.size)


class Library:
    def __init__(self, config: HubConfig):
        self.config = config
        self._lock = threading.Lock()
        self._facts: dict[tuple[str, float, int], ModelFactsRow] = {}
        self._state = config.state_dir / "library.json"

    # -- folders and files the person added ------
    def _load_state(self) -> dict:
        try:
            data = json.loads(self._state.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save_state(self, data: dict) -> None:
        write_atomic(self._state, json.dumps(data, indent=1))

    def folders(self) -> list[Path]:
        return [Path(p) for p in self._load_state().get("folders", [])]

    def add_folder(self, folder: str | Path) -> None:
        folder = Path(folder).expanduser().resolve()
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder")
        with self._lock:
            data = self._load_state()
            folders = data.setdefault("folders", [])
            if str(folder) not in folders:
                folders.append(str(folder))
            self._save_state(data)

    def remove_folder(self, folder: str | Path) -> None:
        with self._lock:
            data = self._load_state()
            data["folders"] = [f for f in data.get("folders", []) if f != str(folder)]
            self._save_state(data)

    def add_file(self, path: str | Path) -> LibraryModel:
        """Open GGUF… or a dropped file: kept in the list where it is (nothing is copied).
        Raises GGUFError (in words) for a file that is not a whole model."""
        path = Path(path).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"{path}: there is no such file")
        check_model_file(path)
        with self._lock:
            data = self._load_state()
            files = data.setdefault("files", [])
            if str(path) not in files:
                files.append(str(path))
            self._save_state(data)
        return next(m for m in self.models() if m.path == str(path))

    # -- listing ------
    def models(self) -> list[LibraryModel]:
        """Every model on disk, the cache first; never touches the network."""
        out = self._from_cache()
        seen = {m.path for m in out}
        places = [(self.config.own_folder, "LayerLab folder")]
        places += [(f, str(f)) for f in self.folders()]
        for folder, where in places:
            for m in _from_folder(folder, where):
                if m.path not in seen:
                    out.append(m)
                    seen.add(m.path)
        for p in self._load_state().get("files", []):
            if p not in seen and Path(p).is_file():
                out += _from_files([Path(p)], "opened file")
                seen.add(p)
        return out

    def _from_cache(self) -> list[LibraryModel]:
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.errors import CacheNotFound

        if not self.config.cache_dir.is_dir():
            return []
        try:
            info = scan_cache_dir(self.config.cache_dir)
        except (CacheNotFound, OSError):
            return []
        out = []
        for repo in sorted(info.repos, key=lambda r: r.repo_id):
            if repo.repo_type != "model":
                continue
            for rev in repo.revisions:
                by_rel = {str(f.file_path.relative_to(rev.snapshot_path)): f for f in rev.files}
                for model in _group(list(by_rel)):
                    paths = [by_rel[r].file_path for r in model]
                    size = sum(by_rel[r].size_on_disk for r in model)
                    tag = quant_tag(model[0])
                    out.append(
                        LibraryModel(
                            path=str(paths[0]),
                            name=f"{repo.repo_id} · {tag}",
                            where="Hugging Face cache",
                            size=size,
                            parts=tuple(str(p) for p in paths),
                            repo_id=repo.repo_id,
                            tag=tag,
                        )
                    )
        return out

    # -- facts ------
    def facts(self, model: LibraryModel) -> ModelFactsRow:
        """The model's facts from its header (cached by file, size and time)."""
        p = Path(model.path)
        try:
            st = p.stat()
        except OSError:
            return ModelFactsRow(problem="The file is gone.")
        key = (str(p), st.st_mtime, st.st_size)
        with self._lock:
            if key in self._facts:
                return self._facts[key]
        try:
            facts = check_model_file(p)
            template = "tokenizer.chat_template" in read_header(LocalFile(p)).kv
            row = ModelFactsRow(
                facts.architecture,
                facts.parameters,
                facts.quant,
                facts.n_ctx_train,
                template,
            )
        except GGUFError as e:
            row = ModelFactsRow(problem=str(e))
        except OSError as e:
            row = ModelFactsRow(problem=f"The file cannot be read: {e.strerror or e}")
        with self._lock:
            self._facts[key] = row
        return row

    # -- deleting ------
    def delete(self, model: LibraryModel) -> int:
        """Remove the model's files from disk; returns the bytes freed. In the cache the
        snapshot links and their blobs go (a blob another snapshot still uses stays)."""
        freed = 0
        if model.where == "Hugging Face cache":
            freed = self._delete_cached(model)
        else:
            for part in model.parts:
                with contextlib.suppress(FileNotFoundError):
                    freed += os.path.getsize(part)
                    os.unlink(part)
            with self._lock:
                data = self._load_state()
                if "files" in data:
                    data["files"] = [f for f in data["files"] if f not in model.parts]
                    self._save_state(data)
        return freed

    def _delete_cached(self, model: LibraryModel) -> int:
        freed = 0
        snapshots = None
        for part in model.parts:
            link = Path(part)
            blob = link.resolve()
            snapshots = snapshots or _snapshots_dir(link)
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            if blob.exists() and not _still_linked(snapshots, blob):
                freed += blob.stat().st_size
                blob.unlink()
        if snapshots is not None:
            _prune(snapshots)
            repo = snapshots.parent
            if not any(p.is_file() for p in snapshots.rglob("*")):
                import shutil

                shutil.rmtree(repo, ignore_errors=True)  # the repo's last model: refs go too
        return freed


def _snapshots_dir(link: Path) -> Path | None:
    for parent in link.parents:
        if parent.name == "snapshots":
            return parent
    return None


def _still_linked(snapshots: Path | None, blob: Path) -> bool:
    if snapshots is None:
        return False
    return any(p.is_symlink() and p.resolve() == blob for p in snapshots.rglob("*"))


def _prune(folder: Path) -> None:
    for d in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            d.rmdir()


def _group(names: list[str]) -> list[list[str]]:
    """Model files among `names` (relative paths), a split model's parts together, in order;
    projector files left out."""
    ggufs = sorted(n for n in names if n.endswith(".gguf"))
    out, taken = [], set()
    for n in ggufs:
        if n in taken:
            continue
        base = n.rsplit("/", 1)[-1].lower()
        if base.startswith("mmproj") or "-mmproj" in base:
            continue
        parts = split_part_names(n)
        if parts is None:
            out.append([n])
            taken.add(n)
            continue
        folder = n.rsplit("/", 1)[0] + "/" if "/" in n else ""
        full = [folder + p for p in parts]
        if n == full[0] and all(p in names for p in full):
            out.append(full)
            taken.update(full)
    return out


def _from_folder(folder: Path, where: str) -> list[LibraryModel]:
    if not folder.is_dir():
        return []
    files = [p for p in folder.rglob("*.gguf") if p.is_file() and not p.name.startswith(".")]
    return _from_files(files, where)


def _from_files(files: list[Path], where: str) -> list[LibraryModel]:
    out = []
    by_folder: dict[Path, list[str]] = {}
    for f in files:
        by_folder.setdefault(f.parent, []).append(f.name)
    for parent, names in sorted(by_folder.items()):
        for model in _group(names):
            paths = [parent / n for n in model]
            out.append(
                LibraryModel(
                    path=str(paths[0]),
                    name=model[0],
                    where=where,
                    size=sum(p.stat().st_size for p in paths),
                    parts=tuple(str(p) for p in paths),
                    tag=quant_tag(model[0]),
                )
            )
    return out
