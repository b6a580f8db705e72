"""GGUF facts from the header only: what a model is and what each tensor costs, in bytes.

`read_facts(source)` reads a local path, a `ByteSource` (e.g. a file on the hub), or the
first part of a split GGUF, and returns `ModelFacts`. Broken or hostile headers raise
`GGUFError` with a sentence saying what is wrong, after bounded reading.

`check_model_file(source)` is `read_facts` plus the header checked against the file(s): call
it before planning or loading a file. A file that is not whole (cut short, garbled, no
tensors, a split part missing) raises `ModelFileDamaged`, a `GGUFError`, in words.

`ggml_type(name)` and `ggml_type_size(name)` are llama.cpp's type table (from `gguf`'s).
"""

from layerlab.core.gguf.check import check_model_file
from layerlab.core.gguf.facts import (
    ModelFacts,
    TensorInfo,
    facts_from_header,
    read_facts,
    read_parts,
)
from layerlab.core.gguf.reader import (
    GGUFError,
    GGUFHeader,
    HeaderLimits,
    ModelFileDamaged,
    ggml_type,
    ggml_type_size,
    read_header,
)
from layerlab.core.gguf.sources import ByteSource, HubFile, LocalFile, split_part_names

__all__ = [
    "ByteSource",
    "GGUFError",
    "GGUFHeader",
    "HeaderLimits",
    "HubFile",
    "LocalFile",
    "ModelFacts",
    "ModelFileDamaged",
    "TensorInfo",
    "check_model_file",
    "facts_from_header",
    "ggml_type",
    "ggml_type_size",
    "read_facts",
    "read_header",
    "read_parts",
    "split_part_names",
]
