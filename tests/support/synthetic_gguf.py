"""Write GGUF files of a chosen shape, for tests and benchmarks.

`write_model(path, spec)` writes a small model llama.cpp can really load (zero weights,
a tiny SentencePiece-style vocabulary), or, with `sparse=True`, only a header describing
the tensors of a big model (70B, 8x7B) followed by a hole: the file has the right size
and the right header, and no data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np
from gguf import GGUFWriter
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

Q = GGMLQuantizationType


@dataclass
class ModelSpec:
    arch: str = "llama"
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 8
    n_head_kv: int = 2
    n_ff: int = 512
    n_vocab: int = 512
    n_ctx_train: int = 4096
    head_dim: int | None = None  # None: n_embd // n_head
    tied: bool = False
    n_expert: int = 0
    n_expert_used: int = 0
    sliding_window: int = 0
    weight_type: GGMLQuantizationType = Q.F16
    name: str = "synthetic"
    extra_kv: dict = field(default_factory=dict)

    @property
    def hd(self) -> int:
        return self.head_dim or self.n_embd // self.n_head


LLAMA_70B = ModelSpec(
    arch="llama",
    n_layer=80,
    n_embd=8192,
    n_head=64,
    n_head_kv=8,
    n_ff=28672,
    n_vocab=128256,
    n_ctx_train=131072,
    weight_type=Q.Q4_K,
    name="Llama-3-70B (header only)",
)
MIXTRAL_8X7B = ModelSpec(
    arch="llama",
    n_layer=32,
    n_embd=4096,
    n_head=32,
    n_head_kv=8,
    n_ff=14336,
    n_vocab=32000,
    n_ctx_train=32768,
    n_expert=8,
    n_expert_used=2,
    weight_type=Q.Q4_K,
    name="Mixtral-8x7B (header only)",
)

_FTYPE = {
    Q.F16: LlamaFileType.MOSTLY_F16,
    Q.Q8_0: LlamaFileType.MOSTLY_Q8_0,
    Q.Q4_0: LlamaFileType.MOSTLY_Q4_0,
    Q.Q4_K: LlamaFileType.MOSTLY_Q4_K_M,
    Q.F32: LlamaFileType.ALL_F32,
}


def tensor_shapes(spec: ModelSpec) -> list[tuple[str, tuple[int, ...], GGMLQuantizationType]]:
    """(name, ggml shape (ne0 first), type) of every tensor llama.cpp expects for `spec`."""
    e, hd, wt = spec.n_embd, spec.hd, spec.weight_type
    out = [("token_embd.weight", (e, spec.n_vocab), wt)]
    for il in range(spec.n_layer):
        b = f"blk.{il}."
        out += [
            (b + "attn_norm.weight", (e,), Q.F32),
            (b + "attn_q.weight", (e, hd * spec.n_head), wt),
            (b + "attn_k.weight", (e, hd * spec.n_head_kv), wt),
            (b + "attn_v.weight", (e, hd * spec.n_head_kv), wt),
            (b + "attn_output.weight", (hd * spec.n_head, e), wt),
            (b + "ffn_norm.weight", (e,), Q.F32),
        ]
        if spec.arch in ("gemma2", "gemma3"):
            out += [
                (b + "post_attention_norm.weight", (e,), Q.F32),
                (b + "post_ffw_norm.weight", (e,), Q.F32),
            ]
        if spec.arch == "gemma3":
            out += [
                (b + "attn_q_norm.weight", (hd,), Q.F32),
                (b + "attn_k_norm.weight", (hd,), Q.F32),
            ]
        if spec.n_expert:
            x = spec.n_expert
            out += [
                (b + "ffn_gate_inp.weight", (e, x), Q.F32),
                (b + "ffn_gate_exps.weight", (e, spec.n_ff, x), wt),
                (b + "ffn_up_exps.weight", (e, spec.n_ff, x), wt),
                (b + "ffn_down_exps.weight", (spec.n_ff, e, x), wt),
            ]
        else:
            out += [
                (b + "ffn_gate.weight", (e, spec.n_ff), wt),
                (b + "ffn_up.weight", (e, spec.n_ff), wt),
                (b + "ffn_down.weight", (spec.n_ff, e), wt),
            ]
    out.append(("output_norm.weight", (e,), Q.F32))
    if not spec.tied:
        out.append(("output.weight", (e, spec.n_vocab), wt))
    return out


def _nbytes(shape: tuple[int, ...], t: GGMLQuantizationType) -> int:
    block, size = GGML_QUANT_SIZES[t]
    rows = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return rows * (shape[0] // block) * size


def _writer(path: Path, spec: ModelSpec) -> GGUFWriter:
    """A writer holding every key llama.cpp needs for `spec`."""
    w = GGUFWriter(str(path), spec.arch)
    w.add_name(spec.name)
    w.add_block_count(spec.n_layer)
    w.add_context_length(spec.n_ctx_train)
    w.add_embedding_length(spec.n_embd)
    w.add_feed_forward_length(spec.n_ff)
    w.add_head_count(spec.n_head)
    w.add_head_count_kv(spec.n_head_kv)
    w.add_key_length(spec.hd)
    w.add_value_length(spec.hd)
    w.add_rope_dimension_count(spec.hd)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_file_type(_FTYPE.get(spec.weight_type, LlamaFileType.GUESSED))
    w.add_vocab_size(spec.n_vocab)
    if spec.n_expert:
        w.add_expert_count(spec.n_expert)
        w.add_expert_used_count(spec.n_expert_used)
    if spec.sliding_window:
        w.add_sliding_window(spec.sliding_window)
    for k, v in spec.extra_kv.items():
        if isinstance(v, int):
            w.add_uint32(k, v)
        elif isinstance(v, float):
            w.add_float32(k, v)
        else:
            w.add_string(k, str(v))
    _add_vocab(w, spec.n_vocab)
    return w


def write_model(path: str | Path, spec: ModelSpec, sparse: bool = False) -> Path:
    path = Path(path)
    w = _writer(path, spec)
    shapes = tensor_shapes(spec)
    for name, shape, t in shapes:
        nb = _nbytes(shape, t)
        row = shape[0] // GGML_QUANT_SIZES[t][0] * GGML_QUANT_SIZES[t][1]
        byte_shape = (*reversed(shape[1:]), row)  # numpy order, rows in bytes
        w.add_tensor_info(name, byte_shape, np.dtype(np.uint8), nb, raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    f = w.fout[0] if isinstance(w.fout, list) else w.fout
    f.flush()
    start = f.tell()
    align = 32
    data_start = (start + align - 1) // align * align
    total = data_start
    for _, shape, t in shapes:
        total += (_nbytes(shape, t) + align - 1) // align * align
    if sparse:
        f.truncate(total)
    else:
        f.write(b"\0" * (data_start - start))
        for _, shape, t in shapes:
            nb = _nbytes(shape, t)
            pad = (nb + align - 1) // align * align - nb
            if t == Q.F32:
                f.write(np.full(nb // 4, 1.0, dtype=np.float32).tobytes() + b"\0" * pad)
            else:
                f.write(b"\0" * (nb + pad))
    f.close()
    return path


def write_split(folder: str | Path, spec: ModelSpec, parts: int, stem: str = "split") -> list[Path]:
    """`spec` as a split GGUF the way llama.cpp's gguf-split writes one: the tensors in order
    over `parts` files named stem-0000i-of-0000N.gguf, every key in the first, split.* keys
    in each, real (zero) data. Returns the parts in order."""
    folder = Path(folder)
    whole = write_model(folder / f".{stem}-whole.gguf", spec)
    data = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(whole)).tensors}
    whole.unlink()
    shapes = tensor_shapes(spec)
    per = -(-len(shapes) // parts)
    paths = []
    for i in range(parts):
        p = folder / f"{stem}-{i + 1:05d}-of-{parts:05d}.gguf"
        w = _writer(p, spec) if i == 0 else GGUFWriter(str(p), spec.arch)
        w.add_uint16("split.no", i)
        w.add_uint16("split.count", parts)
        w.add_int32("split.tensors.count", len(shapes))
        for name, _, t in shapes[i * per : (i + 1) * per]:
            w.add_tensor(name, data[name], raw_dtype=t)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        paths.append(p)
    return paths


def _add_vocab(w: GGUFWriter, n_vocab: int) -> None:
    """A SentencePiece-style vocabulary: control tokens, the 256 bytes, then filler pieces."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tokens += [f"▁t{i}" for i in range(max(0, n_vocab - len(tokens)))]
    tokens = tokens[:n_vocab]
    types = [2, 3, 3] + [6] * 256 + [1] * (len(tokens) - 259)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([-float(i) for i in range(len(tokens))])
    w.add_token_types(types[: len(tokens)])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
