"""What the planner needs to know about a model, derived from its GGUF header(s)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from layerlab.core.gguf.reader import (
    ArraySummary,
    GGUFError,
    GGUFHeader,
    HeaderLimits,
    ModelFileDamaged,
    RawTensor,
    read_header,
)
from layerlab.core.gguf.sources import ByteSource, LocalFile, split_part_names

_BLOCK = re.compile(r"^blk\.(\d+)\.")

# llama.cpp's sliding-window layer pattern per architecture, where the file does not say
# (llama-model.cpp, `hparams.set_swa_pattern(n)`: layer il is SWA iff il % n < n - 1).
_SWA_PATTERN_DEFAULT = {
    "gemma2": 2,
    "gemma3": 6,
    "cohere2": 4,
    "gpt-oss": 2,
    "exaone4": 4,
    "gemma3n": 5,
}
# Architectures where every layer uses the window when one is given.
_SWA_ALL = {"phi3", "mistral3"}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    type: str  # ggml type name: "Q4_K", "F16", ...
    shape: tuple[int, ...]
    nbytes: int
    layer: int | None  # block index for blk.N.*; None for global tensors
    n_elements: int = 0
    is_expert: bool = False  # an MoE expert tensor (read for n_expert_used of n_expert)
    offset: int = 0  # from the start of its file's data section
    part: int = 0  # which file of a split model holds it


@dataclass
class ModelFacts:
    """One model as the planner sees it. All sizes are integer bytes."""

    name: str
    architecture: str
    n_layer: int
    n_embd: int
    n_head: list[int]  # per layer
    n_head_kv: list[int]  # per layer (0 for layers without attention)
    head_dim_k: int
    head_dim_v: int
    n_ff: list[int]
    n_vocab: int
    n_ctx_train: int
    sliding_window: int = 0
    swa_layers: list[bool] = field(default_factory=list)
    n_expert: int = 0
    n_expert_used: int = 0
    tied_embeddings: bool = False
    quant: str = ""
    file_type: int | None = None
    parameters: int = 0
    file_size: int = 0  # bytes of tensor data in all parts (what a download costs, roughly)
    split_count: int = 1
    tensors: list[TensorInfo] = field(default_factory=list)
    size_label: str = ""

    # derived per-layer bytes, filled by facts_from_header
    layer_bytes: list[int] = field(default_factory=list)
    layer_expert_bytes: list[int] = field(default_factory=list)
    token_embd_bytes: int = 0
    output_bytes: int = 0  # output matrix + output norm (on the output device)
    output_dup_bytes: int = 0  # part of output_bytes that is token_embd reused (tied)
    other_host_bytes: int = 0  # global tensors that llama.cpp keeps with the input layer

    @property
    def n_units(self) -> int:
        """Units llama.cpp splits over: every block, and the output."""
        return self.n_layer + 1

    @property
    def weights_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def describe(self) -> str:
        params = (
            f"{self.parameters / 1e9:.1f}B"
            if self.parameters >= 1e9
            else f"{self.parameters / 1e6:.0f}M"
        )
        moe = f", {self.n_expert} experts ({self.n_expert_used} active)" if self.n_expert else ""
        return (
            f"{self.name}: {self.architecture}, {params} parameters, {self.quant}, "
            f"{self.n_layer} layers{moe}, trained context {self.n_ctx_train:,}"
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "architecture": self.architecture,
            "n_layer": self.n_layer,
            "n_embd": self.n_embd,
            "n_head": self.n_head[0] if self.n_head else 0,
            "n_head_kv": self.n_head_kv[0] if self.n_head_kv else 0,
            "head_dim_k": self.head_dim_k,
            "head_dim_v": self.head_dim_v,
            "n_vocab": self.n_vocab,
            "n_ctx_train": self.n_ctx_train,
            "sliding_window": self.sliding_window,
            "n_swa_layers": sum(self.swa_layers),
            "n_expert": self.n_expert,
            "n_expert_used": self.n_expert_used,
            "tied_embeddings": self.tied_embeddings,
            "quant": self.quant,
            "parameters": self.parameters,
            "weights_bytes": self.weights_bytes,
            "split_count": self.split_count,
        }


def read_facts(source: str | Path | ByteSource, limits: HeaderLimits | None = None) -> ModelFacts:
    """Facts of a model from its header(s); follows split GGUF parts."""
    return facts_from_header([h for _, h in read_parts(source, limits)])


def read_parts(
    source: str | Path | ByteSource, limits: HeaderLimits | None = None
) -> list[tuple[ByteSource, GGUFHeader]]:
    """Every file of a model with its header: one, or each part of a split GGUF in order."""
    src = LocalFile(source) if isinstance(source, str | Path) else source
    first = read_header(src, limits)
    parts = [(src, first)]
    names = split_part_names(src.name)
    count = first.kv.get("split.count", 1)
    if isinstance(count, int) and count > 1:
        if names is None or len(names) != count:
            raise GGUFError(
                f"{src.name}: the header says the model is split into {count} "
                "files, but the name is not '<name>-00001-of-0000N.gguf'"
            )
        if names[0] != src.name.rsplit("/", 1)[-1]:
            raise GGUFError(
                f"{src.name} is part {first.kv.get('split.no', 0) + 1} of "
                f"{count}: open the first part, {names[0]}"
            )
        for i, name in enumerate(names[1:], start=2):
            part = src.sibling(name)
            try:
                parts.append((part, read_header(part, limits)))
            except FileNotFoundError:
                raise ModelFileDamaged(
                    f"{src.name} is incomplete: part {i} of {count}, {name}, is missing"
                ) from None
    return parts


def _int(kv: dict, key: str, default: int | None = None) -> int:
    v = kv.get(key, default)
    if v is None:
        raise GGUFError(f"the header lacks '{key}', which llama.cpp needs")
    if isinstance(v, list):
        v = max(v) if v else 0
    if isinstance(v, ArraySummary) or not isinstance(v, int | float):
        raise GGUFError(f"'{key}' is {v!r}, not a number")
    return int(v)


def _per_layer(kv: dict, key: str, n_layer: int, default: int | None = None) -> list[int]:
    v = kv.get(key, default)
    if isinstance(v, list):
        if len(v) != n_layer:
            raise GGUFError(f"'{key}' has {len(v)} entries for {n_layer} layers")
        return [int(x) for x in v]
    return [_int(kv, key, default)] * n_layer


def facts_from_header(headers: list[GGUFHeader]) -> ModelFacts:
    kv = headers[0].kv
    arch = kv.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise GGUFError(f"{headers[0].name}: the header has no general.architecture")
    p = f"{arch}."
    n_layer = _int(kv, p + "block_count")
    if not 0 < n_layer <= 4096:
        raise GGUFError(f"{headers[0].name}: block_count {n_layer} is absurd")
    n_embd = _int(kv, p + "embedding_length")
    n_head = _per_layer(kv, p + "attention.head_count", n_layer)
    n_head_kv = _per_layer(kv, p + "attention.head_count_kv", n_layer, max(n_head))
    head = max(n_head) or 1
    hk = _int(kv, p + "attention.key_length", n_embd // head)
    hv = _int(kv, p + "attention.value_length", n_embd // head)
    n_ff = _per_layer(kv, p + "feed_forward_length", n_layer, 0)
    tensors_raw: list[RawTensor] = [t for h in headers for t in h.tensors]
    names = {t.name for t in tensors_raw}
    if len(names) != len(tensors_raw):
        raise GGUFError(f"{headers[0].name}: a tensor name appears twice")
    tokens = kv.get("tokenizer.ggml.tokens")
    n_vocab = (
        _int(kv, p + "vocab_size", len(tokens) if tokens is not None else None)
        if (p + "vocab_size") in kv or tokens is not None
        else 0
    )
    if not n_vocab:
        emb = next((t for t in tensors_raw if t.name == "token_embd.weight"), None)
        n_vocab = emb.shape[1] if emb and len(emb.shape) > 1 else 0

    swa = _int(kv, p + "attention.sliding_window", 0)
    swa_layers = [False] * n_layer
    pattern = kv.get(p + "attention.sliding_window_pattern")
    if swa:
        if isinstance(pattern, list) and len(pattern) == n_layer:
            swa_layers = [bool(x) for x in pattern]
        elif isinstance(pattern, int) and pattern > 0:
            swa_layers = [il % pattern < pattern - 1 for il in range(n_layer)]
        elif arch in _SWA_PATTERN_DEFAULT:
            n = _SWA_PATTERN_DEFAULT[arch]
            swa_layers = [il % n < n - 1 for il in range(n_layer)]
        elif arch in _SWA_ALL:
            swa_layers = [True] * n_layer

    tensors: list[TensorInfo] = []
    layer_bytes = [0] * n_layer
    layer_expert = [0] * n_layer
    token_embd = output = other = 0
    params = 0
    part_of = [i for i, h in enumerate(headers) for _ in h.tensors]
    for t, part in zip(tensors_raw, part_of, strict=True):
        m = _BLOCK.match(t.name)
        layer = int(m.group(1)) if m else None
        if layer is not None and layer >= n_layer:
            # extra blocks (e.g. multi-token-prediction heads) that llama.cpp skips
            layer = None
        is_expert = "_exps." in t.name or "_exps_" in t.name
        info = TensorInfo(
            t.name, t.type_name, t.shape, t.nbytes, layer, t.n_elements, is_expert, t.offset, part
        )
        tensors.append(info)
        params += t.n_elements
        if layer is not None:
            layer_bytes[layer] += t.nbytes
            if is_expert:
                layer_expert[layer] += t.nbytes
        elif t.name.startswith("token_embd") or t.name.startswith("position_embd"):
            token_embd += t.nbytes
        elif t.name.startswith("output") or t.name.startswith("cls"):
            output += t.nbytes
        elif not t.name.startswith("rope_") and not t.name.startswith("blk."):
            other += t.nbytes
    tied = "output.weight" not in names
    dup = 0
    if tied:
        # llama.cpp duplicates token_embd as the output matrix on the output device
        # (on the host it is the same tensor, so no second copy there).
        dup = next((t.nbytes for t in tensors_raw if t.name == "token_embd.weight"), 0)
        output += dup

    ftype = kv.get("general.file_type")
    quant = ""
    if isinstance(ftype, int):
        try:
            from gguf.constants import LlamaFileType  # numpy with it: only when reading

            quant = LlamaFileType(ftype).name.removeprefix("MOSTLY_")
        except ValueError:
            quant = ""
    if not quant and tensors:
        quant = max(tensors, key=lambda t: t.nbytes).type
    name = kv.get("general.name") or Path(headers[0].name).stem
    return ModelFacts(
        name=str(name),
        architecture=arch,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=hk,
        head_dim_v=hv,
        n_ff=n_ff,
        n_vocab=n_vocab,
        n_ctx_train=_int(kv, p + "context_length", 0),
        sliding_window=swa,
        swa_layers=swa_layers,
        n_expert=_int(kv, p + "expert_count", 0),
        n_expert_used=_int(kv, p + "expert_used_count", 0),
        tied_embeddings=tied,
        quant=quant,
        file_type=ftype if isinstance(ftype, int) else None,
        parameters=params,
        file_size=sum(t.nbytes for t in tensors),
        split_count=len(headers),
        tensors=tensors,
        size_label=str(kv.get("general.size_label", "")),
        layer_bytes=layer_bytes,
        layer_expert_bytes=layer_expert,
        token_embd_bytes=token_embd,
        output_bytes=output,
        output_dup_bytes=dup,
        other_host_bytes=other,
    )
