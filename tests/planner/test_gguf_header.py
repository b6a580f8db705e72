"""GGUF facts from headers: real files, generated shapes, split files, the hub, hostile bytes."""

from __future__ import annotations

import struct
import time
import tracemalloc

import pytest

from layerlab.core.gguf import GGUFError, HubFile, LocalFile, read_facts, read_header
from tests.support.hub_standin import HubStandIn
from tests.support.synthetic_gguf import (
    LLAMA_70B,
    MIXTRAL_8X7B,
    ModelSpec,
    write_model,
    write_split,
)


def test_demo_model_facts(demo_path):
    f = read_facts(demo_path)
    assert (f.architecture, f.n_layer, f.n_embd, f.n_vocab, f.n_ctx_train) == (
        "llama",
        30,
        576,
        49152,
        8192,
    )
    assert f.n_head == [9] * 30 and f.n_head_kv == [3] * 30
    assert (f.head_dim_k, f.head_dim_v) == (64, 64)
    assert f.tied_embeddings and f.quant == "Q4_1"
    assert f.parameters == 134_515_008
    # exact bytes: the tensor data of the file
    assert f.weights_bytes == 96_576_768
    assert (
        sum(f.layer_bytes) + f.token_embd_bytes + f.output_bytes - f.output_dup_bytes
        == f.weights_bytes
    )


def test_large_headers_describe_70b_and_8x7b(tmp_path):
    t0 = time.perf_counter()
    f = read_facts(write_model(tmp_path / "70b.gguf", LLAMA_70B, sparse=True))
    assert time.perf_counter() - t0 < 30
    assert f.n_layer == 80 and f.n_head_kv == [8] * 80 and not f.tied_embeddings
    assert 70e9 < f.parameters < 71e9 and f.quant == "Q4_K_M"
    m = read_facts(write_model(tmp_path / "mx.gguf", MIXTRAL_8X7B, sparse=True))
    assert (m.n_expert, m.n_expert_used) == (8, 2)
    assert 46e9 < m.parameters < 47.5e9
    assert all(e > 0.9 * b for e, b in zip(m.layer_expert_bytes, m.layer_bytes, strict=True))


def _split(tmp_path, spec: ModelSpec, parts: int) -> list:
    """The facts of a whole model, and the same model written as N split files."""
    whole = read_facts(write_model(tmp_path / "whole.gguf", spec))
    return [whole, write_split(tmp_path, spec, parts, stem="m")]


def test_split_gguf_reads_every_part(tmp_path):
    whole, paths = _split(tmp_path, ModelSpec(n_layer=3), 3)
    f = read_facts(paths[0])
    assert f.split_count == 3
    assert f.weights_bytes == whole.weights_bytes
    assert f.layer_bytes == whole.layer_bytes
    with pytest.raises(GGUFError, match="open the first part"):
        read_facts(paths[1])


def test_remote_header_only_through_huggingface_hub(tmp_path):
    write_model(tmp_path / "big-70b.Q4_K_M.gguf", LLAMA_70B, sparse=True)
    size = (tmp_path / "big-70b.Q4_K_M.gguf").stat().st_size
    with HubStandIn() as hub:
        hub.add_repo("lab/big", tmp_path)
        src = HubFile("lab/big", "big-70b.Q4_K_M.gguf", endpoint=hub.endpoint)
        f = read_facts(src)
        assert f.n_layer == 80 and f.parameters > 70e9
        assert hub.bytes_sent < 8 * 1024 * 1024 < size
        assert hub.ranges and all(r.startswith("bytes=") for _, r in hub.ranges)
        missing = HubFile("lab/big", "nope.gguf", endpoint=hub.endpoint)
        with pytest.raises(Exception, match=r"404|not found|Entry"):
            read_facts(missing)


def test_remote_split_model(tmp_path):
    whole, paths = _split(tmp_path, ModelSpec(n_layer=4), 2)
    with HubStandIn() as hub:
        hub.add_repo("lab/split", tmp_path)
        f = read_facts(HubFile("lab/split", paths[0].name, endpoint=hub.endpoint))
    assert f.split_count == 2 and f.weights_bytes == whole.weights_bytes


# ---- hostile and broken headers --------------------------------------------------------


def _header(n_tensors=0, n_kv=0, version=3, magic=b"GGUF") -> bytes:
    return magic + struct.pack("<IQQ", version, n_tensors, n_kv)


def _kv_str(key: str, value: str) -> bytes:
    k, v = key.encode(), value.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", 8) + struct.pack("<Q", len(v)) + v


def _tensor(name: str, dims: list[int], ttype: int) -> bytes:
    n = name.encode()
    return (
        struct.pack("<Q", len(n))
        + n
        + struct.pack("<I", len(dims))
        + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<IQ", ttype, 0)
    )


HOSTILE = {
    "empty": (b"", "not a GGUF file"),
    "wrong magic": (b"GGML" + b"\0" * 60, "not a GGUF file"),
    "old version": (_header(version=1), "version 1"),
    "absurd tensor count": (_header(n_tensors=1 << 62), "claims 4,611,686,018,427,387,904 tensors"),
    "absurd key count": (_header(n_kv=1 << 40), "metadata keys"),
    "absurd string length": (_header(n_kv=1) + struct.pack("<Q", 1 << 60), "length"),
    "absurd array": (
        _header(n_kv=1)
        + _kv_str("a", "b")[:0]
        + struct.pack("<Q", 1)
        + b"k"
        + struct.pack("<IIQ", 9, 4, 1 << 50),
        "items",
    ),
    "unknown value type": (
        _header(n_kv=1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 99),
        "unknown value type 99",
    ),
    "truncated in kv": (
        _header(n_kv=2) + _kv_str("general.architecture", "llama")[:-2],
        "ends inside its header",
    ),
    "truncated in tensors": (
        _header(n_tensors=2, n_kv=0) + _tensor("a", [32, 4], 0) + b"\0\0",
        "ends inside its header",
    ),
    "unknown tensor type": (_header(n_tensors=1) + _tensor("a", [32], 77), "unknown type 77"),
    "too many dims": (_header(n_tensors=1) + _tensor("a", [1, 1, 1, 1, 1], 0), "5 dimensions"),
    "absurd dimension": (_header(n_tensors=1) + _tensor("a", [1 << 50], 0), "absurd dimension"),
    "zero dimension": (_header(n_tensors=1) + _tensor("a", [0], 0), "has a zero dimension"),
    "elements overflow": (
        _header(n_tensors=1) + _tensor("a", [1 << 39, 1 << 39, 1 << 39], 0),
        "elements",
    ),
    "bad block": (_header(n_tensors=1) + _tensor("a", [33], 2), "block size 32"),
    "no architecture": (_header(n_kv=1) + _kv_str("general.name", "x"), "general.architecture"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_header_gives_a_clear_error_quickly(tmp_path, case):
    data, message = HOSTILE[case]
    p = tmp_path / "bad.gguf"
    p.write_bytes(data)
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(GGUFError, match=message):
        read_facts(p)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 2 and peak < 8 * 1024 * 1024, (elapsed, peak)


def test_endless_strings_stop_at_the_header_limit(tmp_path):
    """Many valid-looking long strings: reading stops at max_header_bytes, not at EOF."""
    from layerlab.core.gguf import HeaderLimits

    body = _header(n_kv=1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 8, 10_000)
    body += (struct.pack("<Q", 1000) + b"x" * 1000) * 3000
    p = tmp_path / "long.gguf"
    p.write_bytes(body)
    with pytest.raises(GGUFError, match="larger than 1,048,576 bytes"):
        read_header(LocalFile(p), HeaderLimits(max_header_bytes=1 << 20))
