"""A damaged or incomplete model file is named in words before anything plans or loads it.

Each damaged shape is made from the demo model and from a small generated model
(tests/support/damaged_gguf.py, byte positions from the `gguf` package's own reader), checked
by `check_model_file`, by the layer map's input and by the real `layerlab plan`; and real
llama.cpp is asked whether it, too, refuses every shape we call damaged.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from layerlab.core.gguf import (
    GGUFError,
    HubFile,
    LocalFile,
    ModelFileDamaged,
    check_model_file,
    read_facts,
)
from layerlab.core.planner.inputs import PlanInputError, open_facts
from tests.support import damaged_gguf as damaged
from tests.support.hub_standin import HubStandIn
from tests.support.synthetic_gguf import (
    LLAMA_70B,
    MIXTRAL_8X7B,
    ModelSpec,
    write_model,
    write_split,
)

RIG = Path(__file__).parents[1] / "fixtures" / "rigs" / "3090-p40.json"
SMALL = ModelSpec(n_layer=3, n_embd=256, n_head=4, n_head_kv=2, n_ff=512, n_vocab=600)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("small") / "small.gguf", SMALL)


@pytest.fixture(params=["demo", "synthetic"])
def good(request, demo_path, small) -> Path:
    return Path(demo_path) if request.param == "demo" else small


class CountingFile(LocalFile):
    """A local file that counts the bytes read from it."""

    def __init__(self, path):
        super().__init__(path)
        self.bytes_read = 0

    def read(self, offset: int, size: int) -> bytes:
        data = super().read(offset, size)
        self.bytes_read += len(data)
        return data


# ---- whole files pass ------------------------------------------------------------------


def test_whole_files_pass_with_the_facts_read_facts_gives(good):
    assert check_model_file(good).to_dict() == read_facts(good).to_dict()


def test_the_check_reads_the_header_not_the_file(demo_path):
    src = CountingFile(demo_path)
    check_model_file(src)
    header = damaged.layout(demo_path).data_offset  # 1.8 MB of the demo's 98.4 MB
    # the header in growing chunks (the last may run past it), never the tensor data
    assert src.bytes_read <= 2 * header + 256 * 1024, (src.bytes_read, header)
    assert src.bytes_read < Path(demo_path).stat().st_size // 20


def test_header_only_big_models_and_split_models_pass(tmp_path, shapes):
    for spec in (LLAMA_70B, MIXTRAL_8X7B):
        path = write_model(tmp_path / "big.gguf", spec, sparse=True)
        assert check_model_file(path).n_layer == spec.n_layer
    for path in shapes.values():
        check_model_file(path)
    parts = write_split(tmp_path, SMALL, 3)
    assert check_model_file(parts[0]).split_count == 3


# ---- each damaged shape, from both models ----------------------------------------------


@pytest.mark.parametrize("shape", sorted(damaged.SHAPES))
def test_each_damaged_shape_gives_its_words(good, tmp_path, shape):
    path, words = damaged.SHAPES[shape](good, tmp_path / good.name)
    with pytest.raises(GGUFError, match=re.escape(words)) as caught:
        check_model_file(path)
    # an unknown type may be a newer llama.cpp's: the header cannot be read, not "damaged"
    expected = GGUFError if shape == "unknown tensor type" else ModelFileDamaged
    assert type(caught.value) is expected
    # the layer map's input refuses it with the same words
    with pytest.raises(GGUFError, match=re.escape(words)):
        open_facts(str(path))


def test_a_cut_download_says_how_much_is_there(demo_path, tmp_path):
    path = damaged.copy(demo_path, tmp_path / "demo.gguf")
    damaged.truncate(path, 5_000_000)
    with pytest.raises(ModelFileDamaged) as caught:
        check_model_file(path)
    assert str(caught.value) == "demo.gguf is damaged or incomplete: 5.0 MB of 98.4 MB present"


@pytest.mark.parametrize(
    ("where", "words"),
    [
        ("inside the header", "the file ends inside its header"),
        ("at the data", "damaged or incomplete"),
        ("one byte in", "damaged or incomplete"),
        ("half way", "damaged or incomplete"),
        ("one byte short", "damaged or incomplete"),
    ],
)
def test_cut_anywhere(small, tmp_path, where, words):
    lay = damaged.layout(small)
    needed = max(lay.data_offset + t.offset + t.nbytes for t in lay.tensors)
    keep = {
        "inside the header": lay.data_offset // 2,
        "at the data": lay.data_offset,
        "one byte in": lay.data_offset + 1,
        "half way": (lay.data_offset + needed) // 2,
        "one byte short": needed - 1,
    }[where]
    path = damaged.copy(small, tmp_path / "m.gguf", full=True)
    damaged.truncate(path, keep)
    with pytest.raises(ModelFileDamaged, match=words):
        check_model_file(path)


# ---- split models: every part ----------------------------------------------------------


def test_a_missing_part_is_named(tmp_path):
    parts = write_split(tmp_path, SMALL, 3)
    parts[1].unlink()
    with pytest.raises(ModelFileDamaged, match=r"part 2 of 3, split-00002-of-00003\.gguf, is"):
        check_model_file(parts[0])


def test_a_cut_part_is_named(tmp_path):
    parts = write_split(tmp_path, SMALL, 3)
    damaged.truncate(parts[2], parts[2].stat().st_size - 100)
    with pytest.raises(ModelFileDamaged, match=r"split-00003-of-00003\.gguf is damaged or"):
        check_model_file(parts[0])


def test_a_part_of_another_place_is_named(tmp_path):
    parts = write_split(tmp_path, SMALL, 3)
    shutil.copyfile(parts[1], parts[2])
    with pytest.raises(ModelFileDamaged, match="it says it is part 2 of 3, not 3 of 3"):
        check_model_file(parts[0])


# ---- over the hub ----------------------------------------------------------------------


def test_a_cut_file_on_the_hub_is_named_from_its_header_and_size(small, tmp_path):
    shutil.copyfile(small, tmp_path / "whole.gguf")
    damaged.cut_in_data(small, tmp_path / "cut.gguf", full=True)
    with HubStandIn() as hub:
        hub.add_repo("lab/m", tmp_path)
        whole = HubFile("lab/m", "whole.gguf", endpoint=hub.endpoint)
        assert check_model_file(whole).n_layer == SMALL.n_layer
        assert whole.size() == small.stat().st_size
        with pytest.raises(ModelFileDamaged, match=r"cut\.gguf is damaged or incomplete"):
            open_facts("hf://lab/m/cut.gguf", endpoint=hub.endpoint)


# ---- the real CLI ----------------------------------------------------------------------


def _plan(path: Path | str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "layerlab.cli.main", "plan", str(path), "--rig", str(RIG)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("shape", sorted(damaged.SHAPES))
def test_layerlab_plan_exits_with_the_words_never_a_verdict(demo_path, tmp_path, shape):
    path, words = damaged.SHAPES[shape](Path(demo_path), tmp_path / "demo.gguf")
    out = _plan(path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert words in out.stderr
    assert "fits" not in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_layerlab_plan_words_a_missing_file(tmp_path):
    out = _plan(tmp_path / "nope.gguf")
    assert out.returncode == 2
    assert out.stderr.strip() == f"layerlab plan: {tmp_path / 'nope.gguf'}: there is no such file"
    with pytest.raises(PlanInputError, match="is a folder"):
        open_facts(str(tmp_path))


# ---- llama.cpp agrees ------------------------------------------------------------------

_LOAD = """
import sys, llama_cpp
try:
    llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, verbose=False)
except Exception:
    sys.exit(3)
"""


def _llama_loads(path: Path) -> bool:
    r = subprocess.run(
        [sys.executable, "-c", _LOAD, str(path)], capture_output=True, timeout=120, check=False
    )
    return r.returncode == 0


def test_llama_cpp_refuses_every_shape_we_call_damaged(small, tmp_path):
    """Our check must never call a loadable file damaged: real llama.cpp loads the good
    file and the split model, and refuses every damaged copy (full copies, real data)."""
    assert _llama_loads(small)
    assert _llama_loads(write_split(tmp_path, SMALL, 2)[0])
    loaded = []
    for i, (shape, make) in enumerate(damaged.SHAPES.items()):
        path, _ = make(small, tmp_path / f"damaged-{i}.gguf", full=True)
        if _llama_loads(path):
            loaded.append(shape)
    assert loaded == [], f"llama.cpp loads what we call damaged: {loaded}"


def test_layerlab_plan_words_a_part_it_cannot_read(tmp_path):
    parts = write_split(tmp_path, SMALL, 2)
    parts[1].unlink()
    parts[1].mkdir()  # read_header meets a folder where the second part should be
    out = _plan(parts[0])
    assert out.returncode == 2
    assert out.stderr.strip() == f"layerlab plan: cannot read {parts[1]}: is a directory"
