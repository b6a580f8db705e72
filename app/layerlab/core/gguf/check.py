"""Is this model file whole? Its header checked against the file, before anything plans or loads.

A header can read perfectly while the file is not a model llama.cpp can load: a download cut
short, a garbled copy, a file with no tensors. llama.cpp then fails (or aborts) deep in a load;
the planner would happily say "fits". `check_model_file` reads only the header(s) and each
file's size, so it costs what `read_facts` costs, and applies the rules llama.cpp 0c1e570
applies at load (ggml's gguf.cpp and llama_model_loader):
- tensor data starts at offset 0 of the data section and each tensor follows the one before
  it, padded to the file's alignment (gguf.cpp refuses any other layout);
- every tensor's bytes lie inside the file ("data is not within the file bounds");
- a model has tensors, and every tensor name is one llama.cpp creates for the architecture
  (names from the `gguf` package's tables, which llama.cpp's converters write);
- every part of a split model is there and belongs to it.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from layerlab.core.gguf.facts import ModelFacts, facts_from_header, read_parts
from layerlab.core.gguf.reader import GGUFHeader, HeaderLimits, ModelFileDamaged
from layerlab.core.gguf.sources import ByteSource


def check_model_file(
    source: str | Path | ByteSource, limits: HeaderLimits | None = None
) -> ModelFacts:
    """The model's facts, once its header(s) agree with its file(s); else `ModelFileDamaged`
    (or `GGUFError` for a header that cannot be read) with a sentence saying what is wrong."""
    parts = read_parts(source, limits)
    first_name = parts[0][0].name
    for i, (src, header) in enumerate(parts):
        if len(parts) > 1:
            _check_belongs(first_name, header, i, len(parts))
        _check_data(src, header)
    headers = [h for _, h in parts]
    n_tensors = sum(len(h.tensors) for h in headers)
    if n_tensors == 0:
        raise ModelFileDamaged(f"{first_name} has no tensors: it holds a header, not a model")
    expected = headers[0].kv.get("split.tensors.count")
    if len(parts) > 1 and isinstance(expected, int) and expected != n_tensors:
        raise ModelFileDamaged(
            f"{first_name} is damaged or incomplete: its parts hold {n_tensors:,} tensors, "
            f"the header promises {expected:,}"
        )
    facts = facts_from_header(headers)
    known = _known_names(facts.architecture)
    for t in facts.tensors:
        if not known.match(t.name):
            raise ModelFileDamaged(
                f"{first_name} is damaged or not for llama.cpp: tensor {t.name} is not one "
                f"a {facts.architecture} model has"
            )
    return facts


def _check_belongs(first: str, header: GGUFHeader, index: int, count: int) -> None:
    no, of = header.kv.get("split.no"), header.kv.get("split.count")
    if no != index or of != count:
        raise ModelFileDamaged(
            f"{header.name} does not belong with {first}: it says it is part "
            f"{(no if isinstance(no, int) else -1) + 1} of {of}, not {index + 1} of {count}"
        )


def _check_data(src: ByteSource, header: GGUFHeader) -> None:
    name = header.name
    align = header.kv.get("general.alignment", 32)
    size = _size(src)
    at = 0  # where the next tensor must start, relative to the data section
    needed = header.data_offset
    for t in header.tensors:
        end = header.data_offset + t.offset + t.nbytes
        if t.offset != at:
            if size is not None and end > size:
                raise ModelFileDamaged(
                    f"{name} is damaged: tensor {t.name} lies outside the file (its data "
                    f"would end at byte {end:,}; the file has {size:,} bytes)"
                )
            raise ModelFileDamaged(
                f"{name} is damaged: tensor {t.name} starts at byte {t.offset:,} of the "
                f"tensor data, where the tensors before it end at byte {at:,}"
            )
        at += (t.nbytes + align - 1) // align * align
        needed = max(needed, end)
    if size is None:
        # A source that cannot say its size: its last needed byte is there, or it is not.
        present = needed == 0 or len(src.read(needed - 1, 1)) == 1
        if not present:
            raise ModelFileDamaged(
                f"{name} is damaged or incomplete: it is shorter than the "
                f"{_words(needed)} its header describes"
            )
        return
    if size < needed:
        raise ModelFileDamaged(f"{name} is damaged or incomplete: {_present(size, needed)} present")


def _size(src: ByteSource) -> int | None:
    size = getattr(src, "size", None)
    return size() if callable(size) else None


def _words(n: int) -> str:
    """File sizes as a file manager or the hub shows them (decimal units)."""
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.1f} kB"
    return f"{n:,} bytes"


def _present(have: int, need: int) -> str:
    a, b = _words(have), _words(need)
    if a == b:  # a few bytes short: the rounded sizes would read the same
        return f"{have:,} of {need:,} bytes"
    return f"{a} of {b}"


@functools.cache
def _known_names(arch: str) -> re.Pattern[str]:
    """Every tensor name llama.cpp creates for `arch` ('blk.7.attn_q.weight'), or for any
    architecture when the `gguf` tables do not know this one."""
    from gguf.constants import MODEL_ARCH_NAMES, MODEL_TENSORS, TENSOR_NAMES

    by_name = {v: k for k, v in MODEL_ARCH_NAMES.items()}
    kinds = MODEL_TENSORS[by_name[arch]] if arch in by_name else list(TENSOR_NAMES)
    bases = sorted({TENSOR_NAMES[k] for k in kinds}, key=len, reverse=True)
    alternatives = "|".join(re.escape(b).replace(re.escape("{bid}"), r"\d+") for b in bases)
    # a base name and its kind of data: '.weight', '.bias', '.scale', ...
    return re.compile(rf"^(?:{alternatives})(?:\.\w+)?$")
