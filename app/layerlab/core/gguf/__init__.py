"""GGUF facts from the header only: what a model is and what each tensor costs, in bytes.

`read_facts(source)` reads a local path, a `ByteSource` (e.g. a file on the hub), or the
first part of a split GGUF, and returns `ModelFacts`. Broken or hostile headers raise
`GGUFError` with a sentence saying what is wrong, after bounded reading.
"""

from layerlab.core.gguf.facts import ModelFacts, TensorInfo, facts_from_header, read_facts
from layerlab.core.gguf.reader import GGUFError, GGUFHeader, HeaderLimits, read_header
from layerlab.core.gguf.sources import ByteSource, HubFile, LocalFile, split_part_names

__all__ = [
    "ByteSource",
    "GGUFError",
    "GGUFHeader",
    "HeaderLimits",
    "HubFile",
    "LocalFile",
    "ModelFacts",
    "TensorInfo",
    "facts_from_header",
    "read_facts",
    "read_header",
    "split_part_names",
]
