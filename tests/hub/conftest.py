"""The hub's tests: a local stand-in of the Hugging Face Hub on loopback, the real
huggingface_hub client pointed at it, GGUFs generated here, every cache and state in tmp."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerlab.core.devices.rig import load_rig
from layerlab.core.hub.config import HubConfig
from layerlab.core.hub.downloads import NetworkWait
from layerlab.core.hub.hub import Cluster, ModelHub
from layerlab.core.planner.devices import devices_from_machine
from tests.support.hub_standin import HubStandIn
from tests.support.synthetic_gguf import LLAMA_70B, ModelSpec, Q, write_model, write_split

RIGS = Path(__file__).parents[1] / "fixtures" / "rigs"
TINY = ModelSpec(n_layer=4, n_embd=256, n_head=8, n_head_kv=2, n_ff=512, n_vocab=512)
REPO = "tester/Tiny-GGUF"
BIG = "tester/Llama-3-70B-GGUF"


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """Repo folders: a tiny model in four quants (one split in two parts, plus a projector
    file), a header-only 70B, and a repo with no GGUF."""
    root = tmp_path_factory.mktemp("hub")
    tiny = root / "tiny"
    tiny.mkdir()
    for tag, t in [("F16", Q.F16), ("Q8_0", Q.Q8_0), ("Q4_0", Q.Q4_0)]:
        write_model(tiny / f"Tiny-{tag}.gguf", ModelSpec(**{**TINY.__dict__, "weight_type": t}))
    write_split(tiny, ModelSpec(**{**TINY.__dict__, "weight_type": Q.Q4_K}), 2, "Tiny-Q4_K_M")
    write_model(tiny / "mmproj-Tiny-F16.gguf", TINY)
    (tiny / "README.md").write_text("# Tiny\n")
    big = root / "big"
    big.mkdir()
    write_model(big / "Llama-3-70B-Q4_K_M.gguf", LLAMA_70B, sparse=True)
    empty = root / "empty"
    empty.mkdir()
    (empty / "model.safetensors").write_bytes(b"\0" * 100)
    return {"tiny": tiny, "big": big, "empty": empty}


@pytest.fixture
def standin(models):
    with HubStandIn() as hub:
        hub.add_repo(REPO, models["tiny"], downloads=1200, likes=12, parameters=5_000_000)
        hub.add_repo(BIG, models["big"], downloads=90000, likes=300, parameters=70_600_000_000)
        hub.add_repo("tester/Gated-Tiny-GGUF", models["tiny"], gated=True, token="hf_good")
        hub.add_repo("tester/No-GGUF-Here", models["empty"])
        yield hub


@pytest.fixture
def config(standin, tmp_path, monkeypatch) -> HubConfig:
    # huggingface_hub's own token and cache stay out of the person's home
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return HubConfig(
        endpoint=standin.endpoint,
        cache_dir=tmp_path / "cache",
        own_folder=tmp_path / "own",
        state_dir=tmp_path / "state",
        offline=False,
        margin_bytes=0,
    )


def rig_cluster(name: str = "2x3060", n_ctx: int | None = 4096) -> Cluster:
    return Cluster(devices_from_machine(load_rig(RIGS / f"{name}.json")), n_ctx)


@pytest.fixture
def hub(config):
    h = ModelHub(
        config,
        cluster=rig_cluster,
        retry_delays_s=(0.2, 0.4, 0.8),
        network_wait=NetworkWait(first_s=0.1, max_s=0.4, timeout_s=1.0),
    )
    h.token.file = config.state_dir / "token"
    yield h
    h.close()
