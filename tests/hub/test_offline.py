"""Offline: no socket opens to a non-loopback address, and the library still works."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from layerlab.core.hub.config import HubConfig
from layerlab.core.hub.hub import ModelHub
from layerlab.core.hub.problems import HubProblem
from tests.hub.conftest import REPO


@pytest.fixture
def no_internet(monkeypatch):
    """Fails the test on any connection to an address that is not loopback (the real
    huggingface.co included), and on any name lookup but localhost's."""
    tried: list[object] = []
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        inet = self.family in (socket.AF_INET, socket.AF_INET6)
        if inet and not ipaddress.ip_address(str(host).split("%")[0]).is_loopback:
            tried.append(address)
            raise AssertionError(f"a socket opened to {address}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kw):
        if host not in ("127.0.0.1", "::1", "localhost", None):
            tried.append(host)
            raise AssertionError(f"a name lookup for {host}")
        return real_getaddrinfo(host, *args, **kw)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield tried
    assert tried == []


def test_the_guard_can_fail(no_internet):
    with pytest.raises(AssertionError), socket.create_connection(("192.0.2.1", 443), 0.1):
        pass
    no_internet.clear()


def test_offline_hub_calls_nobody_and_the_library_works(hub, standin, monkeypatch, no_internet):
    # while online, from the stand-in on loopback: nothing else is asked (huggingface_hub
    # would fetch a list from huggingface.co while building headers; LayerLab turns it off)
    item = hub.pull(f"{REPO}:Q4_0")
    assert hub.downloads.wait(item.id, 60).state == "done"
    seen = len(standin.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = ModelHub(
        HubConfig(
            endpoint="https://huggingface.co",  # the real hub: any call would trip the guard
            cache_dir=hub.config.cache_dir,
            own_folder=hub.config.own_folder,
            state_dir=hub.config.state_dir,
        )
    )
    try:
        assert offline.offline
        for call in (
            lambda: offline.search("llama"),
            lambda: offline.quants(REPO),
            lambda: offline.pull(f"{REPO}:Q8_0"),
            lambda: offline.badges(REPO, []),
        ):
            with pytest.raises(HubProblem) as e:
                call()
            assert e.value.kind == "offline"
        (model,) = offline.library.models()
        assert offline.library.facts(model).architecture == "llama"
    finally:
        offline.close()
    assert len(standin.requests) == seen


def test_making_a_hub_calls_nobody(no_internet, tmp_path):
    hub = ModelHub(HubConfig(endpoint="https://huggingface.co", state_dir=tmp_path))
    hub.library.models()
    _ = hub.downloads.items()
    hub.close()


def test_reading_a_remote_header_calls_only_the_endpoint(
    standin, monkeypatch, no_internet, tmp_path
):
    """`layerlab plan hf://…` and the layer map read headers through HubFile, outside the
    hub package: huggingface_hub must not fetch its agent list from huggingface.co there
    either. Its switch and in-process cache are put back as a fresh process has them."""
    import huggingface_hub.constants as constants
    from huggingface_hub.utils import _detect_agent

    from layerlab.core.gguf import HubFile, read_facts

    monkeypatch.delenv("HF_HUB_DISABLE_TELEMETRY", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", False)
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agents.json"))
    monkeypatch.setattr(_detect_agent, "_registry", None)
    facts = read_facts(HubFile(REPO, "Tiny-Q8_0.gguf", endpoint=standin.endpoint))
    assert facts.architecture == "llama"
    assert standin.requests and all("/resolve/" in p for _, p in standin.requests)
