"""A bounded, incremental GGUF header parser over any `ByteSource`.

It reads growing chunks only as far as the header goes (key/values, tensor infos), keeps
small values and only the length of big arrays (the tokenizer's), and checks every count,
length and dimension against limits before trusting it, so a truncated, foreign or hostile
file ends in a `GGUFError` after reading at most `HeaderLimits.max_header_bytes`.
Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from typing import Any

from layerlab.core.gguf.sources import ByteSource


@functools.cache
def _ggml():
    """gguf's ggml type table. Importing gguf imports numpy (~0.5 s of the window's cold
    start), which nothing needs until a model file is read."""
    from gguf import constants

    return constants


MAGIC = b"GGUF"
GGML_MAX_DIMS = 4

# value types (gguf.md)
_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1),
    1: ("<b", 1),
    2: ("<H", 2),
    3: ("<h", 2),
    4: ("<I", 4),
    5: ("<i", 4),
    6: ("<f", 4),
    7: ("<?", 1),
    10: ("<Q", 8),
    11: ("<q", 8),
    12: ("<d", 8),
}
T_STRING, T_ARRAY = 8, 9
_TYPE_NAMES = {
    0: "u8",
    1: "i8",
    2: "u16",
    3: "i16",
    4: "u32",
    5: "i32",
    6: "f32",
    7: "bool",
    8: "string",
    9: "array",
    10: "u64",
    11: "i64",
    12: "f64",
}


def ggml_type(name: str) -> int:
    """llama.cpp's number for a ggml type as LoadPlan and the person name it ('q8_0', 'f16').

    The one copy of ggml's type table is the `gguf` package's (written from ggml.h)."""
    try:
        return int(_ggml().GGMLQuantizationType[name.upper()])
    except KeyError:
        raise ValueError(f"'{name}' is not a ggml type") from None


def ggml_type_size(name: str) -> tuple[int, int]:
    """(elements per block, bytes per block) of a ggml type: f16 (1, 2), q8_0 (32, 34)."""
    return _ggml().GGML_QUANT_SIZES[_ggml().GGMLQuantizationType(ggml_type(name))]


class GGUFError(ValueError):
    """The header cannot be read; the message says where and why."""


class ModelFileDamaged(GGUFError):
    """The file is not whole: it ends early, or its header describes bytes that are not there
    or cannot be (a download cut short, a garbled copy). The message says which, in words."""


@dataclass(frozen=True)
class HeaderLimits:
    max_header_bytes: int = 256 * 1024 * 1024  # the biggest real tokenizers take ~10 MiB
    max_kv: int = 65_536
    max_tensors: int = 1_000_000
    max_key_len: int = 65_536
    max_string_len: int = 64 * 1024 * 1024
    max_array_len: int = 64 * 1024 * 1024
    max_dim: int = 1 << 40
    max_elements: int = 1 << 50  # a few PB of weights
    keep_array_len: int = 4096  # arrays longer than this keep only their length and type


@dataclass(frozen=True)
class ArraySummary:
    """A long array (tokens, merges): its element type and length, not its contents."""

    item_type: str
    length: int

    def __len__(self) -> int:
        return self.length


@dataclass(frozen=True)
class RawTensor:
    name: str
    shape: tuple[int, ...]  # ggml order: ne0 (row length) first
    ggml_type: int
    offset: int  # relative to the data section

    @property
    def type_name(self) -> str:
        return _ggml().GGMLQuantizationType(self.ggml_type).name

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        block, size = _ggml().GGML_QUANT_SIZES[_ggml().GGMLQuantizationType(self.ggml_type)]
        rows = self.n_elements // self.shape[0] if self.shape else 1
        return rows * (self.shape[0] // block) * size if self.shape else size


@dataclass
class GGUFHeader:
    name: str
    version: int
    kv: dict[str, Any] = field(default_factory=dict)
    tensors: list[RawTensor] = field(default_factory=list)
    header_bytes: int = 0  # where the tensor infos end
    data_offset: int = 0  # start of the tensor data (aligned)


class _Cursor:
    """Sequential reads over a source, fetching chunks that grow as the header does."""

    def __init__(self, source: ByteSource, limits: HeaderLimits, first_chunk: int):
        self.source = source
        self.limits = limits
        self.buf = b""
        self.base = 0  # file offset of buf[0]
        self.pos = 0  # file offset of the next byte to parse
        self.chunk = first_chunk
        self.eof = False
        self.what = "the header"

    def _fill(self, need: int) -> None:
        while self.base + len(self.buf) < self.pos + need:
            if self.pos + need > self.limits.max_header_bytes:
                raise GGUFError(
                    f"{self.source.name}: the header would be larger than "
                    f"{self.limits.max_header_bytes:,} bytes (reading {self.what} at byte "
                    f"{self.pos:,}); this is not a GGUF model header we can trust"
                )
            if self.eof:
                raise ModelFileDamaged(
                    f"{self.source.name}: the file ends inside its header (reading {self.what} "
                    f"at byte {self.pos:,}, {self.base + len(self.buf):,} bytes available); "
                    "it is truncated or still downloading"
                )
            # drop what is parsed, keep the rest, fetch the next chunk
            keep_from = self.pos - self.base
            self.buf = self.buf[keep_from:]
            self.base = self.pos
            want = max(self.chunk, need - len(self.buf))
            want = min(want, self.limits.max_header_bytes - (self.base + len(self.buf)))
            start = self.base + len(self.buf)
            data = self.source.read(start, want)
            if len(data) < want:
                self.eof = True
            self.buf += data
            self.chunk = min(self.chunk * 2, 16 * 1024 * 1024)

    def take(self, n: int) -> bytes:
        self._fill(n)
        i = self.pos - self.base
        self.pos += n
        return self.buf[i : i + n]

    def skip(self, n: int) -> None:
        # Skipped bytes are still header bytes: fetch them (bounded by max_header_bytes).
        while n > 0:
            step = min(n, 4 * 1024 * 1024)
            self.take(step)
            n -= step

    def unpack(self, fmt: str, size: int) -> Any:
        return struct.unpack(fmt, self.take(size))[0]

    def u32(self) -> int:
        return self.unpack("<I", 4)

    def u64(self) -> int:
        return self.unpack("<Q", 8)


def read_header(
    source: ByteSource, limits: HeaderLimits | None = None, first_chunk: int = 256 * 1024
) -> GGUFHeader:
    """Parse the header of one GGUF file (one part of a split model)."""
    limits = limits or HeaderLimits()
    c = _Cursor(source, limits, first_chunk)
    name = source.name
    c.what = "the magic number"
    magic = c.take(4) if _has(c, 4) else b""
    if magic != MAGIC:
        raise GGUFError(f"{name}: not a GGUF file (it starts with {magic[:4]!r}, not b'GGUF')")
    c.what = "the version"
    version = c.u32()
    if version not in (2, 3):
        raise GGUFError(f"{name}: GGUF version {version} is not supported (only 2 and 3)")
    c.what = "the tensor and key counts"
    n_tensors, n_kv = c.u64(), c.u64()
    if n_tensors > limits.max_tensors:
        raise GGUFError(
            f"{name}: the header claims {n_tensors:,} tensors "
            f"(more than {limits.max_tensors:,}); the file is damaged or hostile"
        )
    if n_kv > limits.max_kv:
        raise GGUFError(
            f"{name}: the header claims {n_kv:,} metadata keys "
            f"(more than {limits.max_kv:,}); the file is damaged or hostile"
        )
    header = GGUFHeader(name=name, version=version)
    for i in range(n_kv):
        c.what = f"metadata key {i + 1} of {n_kv}"
        key = _string(c, limits.max_key_len, "a metadata key")
        c.what = f"the value of '{key}'"
        vtype = c.u32()
        if key in header.kv:
            raise GGUFError(f"{name}: metadata key '{key}' appears twice")
        header.kv[key] = _value(c, vtype, limits, key)
    for i in range(n_tensors):
        c.what = f"tensor info {i + 1} of {n_tensors}"
        header.tensors.append(_tensor(c, limits, name))
    header.header_bytes = c.pos
    align = header.kv.get("general.alignment", 32)
    if not isinstance(align, int) or align <= 0 or align & (align - 1) or align > 1 << 20:
        raise GGUFError(f"{name}: general.alignment {align!r} is not a power of two")
    header.data_offset = (c.pos + align - 1) // align * align
    return header


def _has(c: _Cursor, n: int) -> bool:
    try:
        c._fill(n)
    except GGUFError:
        return False
    return True


def _string(c: _Cursor, max_len: int, what: str) -> str:
    n = c.u64()
    if n > max_len:
        raise GGUFError(
            f"{c.source.name}: {what} claims a length of {n:,} bytes "
            f"(at most {max_len:,} allowed) at byte {c.pos - 8:,}"
        )
    raw = c.take(n)
    return raw.decode("utf-8", errors="replace")


def _value(c: _Cursor, vtype: int, limits: HeaderLimits, key: str) -> Any:
    if vtype in _SCALARS:
        fmt, size = _SCALARS[vtype]
        return c.unpack(fmt, size)
    if vtype == T_STRING:
        return _string(c, limits.max_string_len, f"the string value of '{key}'")
    if vtype == T_ARRAY:
        item = c.u32()
        n = c.u64()
        if n > limits.max_array_len:
            raise GGUFError(
                f"{c.source.name}: array '{key}' claims {n:,} items "
                f"(at most {limits.max_array_len:,} allowed)"
            )
        if item == T_ARRAY:
            raise GGUFError(f"{c.source.name}: array '{key}' holds arrays; not supported")
        if item == T_STRING:
            if n > limits.keep_array_len:
                for _ in range(n):
                    ln = c.u64()
                    if ln > limits.max_string_len:
                        raise GGUFError(f"{c.source.name}: a string in '{key}' claims {ln:,} bytes")
                    c.skip(ln)
                return ArraySummary("string", n)
            return [_string(c, limits.max_string_len, f"a string in '{key}'") for _ in range(n)]
        if item not in _SCALARS:
            raise GGUFError(f"{c.source.name}: array '{key}' has unknown item type {item}")
        fmt, size = _SCALARS[item]
        if n * size > limits.max_header_bytes:
            raise GGUFError(
                f"{c.source.name}: array '{key}' claims {n:,} items of "
                f"{size} bytes, more than a header may hold"
            )
        raw = c.take(n * size) if n * size <= 64 * 1024 * 1024 else None
        if raw is None or n > limits.keep_array_len:
            if raw is None:
                c.skip(n * size)
            return ArraySummary(_TYPE_NAMES[item], n)
        return list(struct.unpack(f"<{n}{fmt[1]}", raw))
    raise GGUFError(f"{c.source.name}: metadata '{key}' has unknown value type {vtype}")


def _tensor(c: _Cursor, limits: HeaderLimits, name: str) -> RawTensor:
    tname = _string(c, 4096, "a tensor name")
    n_dims = c.u32()
    if not 1 <= n_dims <= GGML_MAX_DIMS:
        raise GGUFError(
            f"{name}: tensor '{tname}' has {n_dims} dimensions (ggml allows 1 to {GGML_MAX_DIMS})"
        )
    shape = tuple(c.u64() for _ in range(n_dims))
    total = 1
    for d in shape:
        if d == 0:
            raise ModelFileDamaged(
                f"{name}: tensor '{tname}' has a zero dimension (shape {list(shape)}): "
                "the file is damaged"
            )
        if d > limits.max_dim:
            raise GGUFError(
                f"{name}: tensor '{tname}' has an absurd dimension {d:,} (shape {list(shape)})"
            )
        total *= d
    if total > limits.max_elements:
        raise GGUFError(
            f"{name}: tensor '{tname}' claims {total:,} elements; the file is damaged or hostile"
        )
    ttype = c.u32()
    try:
        qt = _ggml().GGMLQuantizationType(ttype)
        block, _ = _ggml().GGML_QUANT_SIZES[qt]
    except (ValueError, KeyError):
        raise GGUFError(
            f"{name}: tensor '{tname}' has unknown type {ttype}; this file needs "
            "a newer llama.cpp (or is damaged)"
        ) from None
    if shape[0] % block:
        raise GGUFError(
            f"{name}: tensor '{tname}' of type {qt.name} has rows of {shape[0]} "
            f"elements, not a multiple of its block size {block}"
        )
    offset = c.u64()
    return RawTensor(tname, shape, ttype, offset)
