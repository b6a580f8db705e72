"""Chat tests: a real engine on the demo model (one for all the chat tests: loading it is
the slow part on 2 cores), a fresh store per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from layerlab.core.chat.service import ChatService
from layerlab.core.chat.store import ConversationSettings, Sampling, Store
from layerlab.core.engine.supervisor import Failed, Ready
from layerlab.core.head import Head
from layerlab.core.load_plan import default_plan

# Greedy and short: the same answer every run, and quick on 2 cores.
GREEDY = Sampling("Precise", temperature=0.0, max_tokens=24, seed=42)
SETTINGS = ConversationSettings(sampling=GREEDY)


# package scope: shared by tests/chat alone, and gone before other folders count engines
@pytest.fixture(scope="package")
def head(demo_model, tmp_path_factory) -> Iterator[Head]:
    state = tmp_path_factory.mktemp("head")
    h = Head(persist=False, state_dir=state)
    h.load(default_plan(str(demo_model), None, 2048, "demo"))
    s = h.supervisor.wait_for((Ready, Failed), 90)
    assert isinstance(s, Ready), getattr(s, "message", s)
    yield h
    h.close()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "chats.sqlite3"


@pytest.fixture
def chat(head: Head, store_path: Path) -> Iterator[ChatService]:
    service = ChatService(head.client, store_path, engine_state=lambda: head.state)
    yield service
    service.close()


@pytest.fixture
def store(store_path: Path) -> Iterator[Store]:
    s = Store(store_path)
    yield s
    s.close()
