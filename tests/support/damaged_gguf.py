"""Damaged copies of a good GGUF file, made the way real damage happens: a download cut short,
a header whose numbers were garbled. Byte positions come from the `gguf` package's own reader,
not from ours, so a test built on these copies checks our reader against an independent one.

A copy is "header + hole" by default: the header bytes of the original followed by a sparse
hole up to the original size. The check under test reads only the header and the file size,
so this is the same file to it, and copying a 98 MB model per case costs nothing.
"""

from __future__ import annotations

import functools
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import gguf


@dataclass(frozen=True)
class TensorField:
    """Where one tensor info sits in the header (absolute file positions)."""

    name: str
    name_pos: int
    dims: tuple[int, ...]
    dims_pos: int
    type_pos: int
    offset: int  # relative to the data section
    offset_pos: int
    nbytes: int


@dataclass(frozen=True)
class Layout:
    size: int
    data_offset: int
    n_tensors_pos: int
    tensors: list[TensorField]

    def tensor(self, name: str) -> TensorField:
        return next(t for t in self.tensors if t.name == name)


def layout(path: str | Path) -> Layout:
    st = Path(path).stat()
    return _layout(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _layout(path: str, size: int, _mtime_ns: int) -> Layout:
    """gguf's reader parses every key (the demo's 49,152 tokens: seconds); once per file."""
    r = gguf.GGUFReader(path)
    out = []
    for t in r.tensors:
        f = t.field
        pos = [f.offset]
        for part in f.parts:
            pos.append(pos[-1] + part.nbytes)
        # parts: name length, name, n_dims, dims, type, offset
        out.append(
            TensorField(
                name=t.name,
                name_pos=pos[1],
                dims=tuple(int(d) for d in f.parts[3]),
                dims_pos=pos[3],
                type_pos=pos[4],
                offset=int(f.parts[5][0]),
                offset_pos=pos[5],
                nbytes=int(t.n_bytes),
            )
        )
    # magic (4) + version (4), then the tensor count (u64)
    return Layout(size=size, data_offset=r.data_offset, n_tensors_pos=8, tensors=out)


def copy(src: str | Path, dst: str | Path, full: bool = False) -> Path:
    """A copy of src at dst: header + sparse hole (default) or every byte (`full`)."""
    dst = Path(dst)
    if full:
        shutil.copyfile(src, dst)
        return dst
    lay = layout(src)
    with open(src, "rb") as f:
        head = f.read(lay.data_offset)
    with open(dst, "wb") as f:
        f.write(head)
        f.truncate(lay.size)
    return dst


def patch(path: str | Path, pos: int, fmt: str, value: int | bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(pos)
        f.write(struct.pack(fmt, value) if not isinstance(value, bytes) else value)


def truncate(path: str | Path, keep: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(keep)


# ---- the damaged shapes --------------------------------------------------------------
# Each takes a good file and a destination, writes the damaged copy and returns
# (its path, a piece of the words the check must say).


def cut_in_data(src: Path, dst: Path, fraction: float = 0.05, full: bool = False):
    """A download cut short inside the tensor data."""
    lay = layout(src)
    copy(src, dst, full)
    keep = lay.data_offset + int((lay.size - lay.data_offset) * fraction)
    truncate(dst, keep)
    return dst, "damaged or incomplete"


def last_byte_missing(src: Path, dst: Path, full: bool = False):
    lay = layout(src)
    copy(src, dst, full)
    needed = max(lay.data_offset + t.offset + t.nbytes for t in lay.tensors)
    truncate(dst, needed - 1)
    return dst, f"{needed - 1:,} of {needed:,} bytes present"


def tensor_outside(src: Path, dst: Path, full: bool = False):
    """The last tensor's offset garbled far past the end of the file."""
    lay = layout(src)
    copy(src, dst, full)
    t = lay.tensors[-1]
    patch(dst, t.offset_pos, "<Q", t.offset + (1 << 34))
    return dst, f"tensor {t.name} lies outside the file"


def tensor_out_of_place(src: Path, dst: Path, full: bool = False):
    """A middle tensor's offset moved by one alignment step: still inside the file."""
    lay = layout(src)
    copy(src, dst, full)
    t = lay.tensors[len(lay.tensors) // 2]
    patch(dst, t.offset_pos, "<Q", t.offset + 32)
    return dst, f"tensor {t.name} starts at byte"


def no_tensors(src: Path, dst: Path, full: bool = False):
    lay = layout(src)
    copy(src, dst, full)
    patch(dst, lay.n_tensors_pos, "<Q", 0)
    return dst, "has no tensors"


def zero_dimension(src: Path, dst: Path, full: bool = False):
    lay = layout(src)
    copy(src, dst, full)
    t = next(t for t in lay.tensors if len(t.dims) > 1)
    patch(dst, t.dims_pos + 8 * (len(t.dims) - 1), "<Q", 0)
    return dst, f"tensor '{t.name}' has a zero dimension"


def unknown_type(src: Path, dst: Path, full: bool = False):
    lay = layout(src)
    copy(src, dst, full)
    t = lay.tensors[len(lay.tensors) // 2]
    patch(dst, t.type_pos, "<I", 77)
    return dst, "unknown type 77"


def unknown_name(src: Path, dst: Path, full: bool = False):
    """One tensor renamed (same length) to a name no llama.cpp model has."""
    lay = layout(src)
    copy(src, dst, full)
    t = next(t for t in lay.tensors if t.name.endswith("ffn_up.weight"))
    new = t.name.replace("ffn_up", "ffn_uq")
    patch(dst, t.name_pos, "<b", new.encode())
    return dst, f"tensor {new} is not one"


SHAPES = {
    "cut in the tensor data": cut_in_data,
    "last byte missing": last_byte_missing,
    "tensor data outside the file": tensor_outside,
    "tensor out of place": tensor_out_of_place,
    "no tensors": no_tensors,
    "a zero dimension": zero_dimension,
    "unknown tensor type": unknown_type,
    "unknown tensor name": unknown_name,
}
