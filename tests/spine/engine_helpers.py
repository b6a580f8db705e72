"""Helpers for tests that run a real engine."""

from __future__ import annotations

from layerlab.core.engine.client import Delta, EngineClient, Finished
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready
from layerlab.core.load_plan import LoadPlan

PROMPT = [{"role": "user", "content": "Write a short poem about the sea."}]
GREEDY = {"temperature": 0, "seed": 42, "max_tokens": 64}


def load(plan: LoadPlan, timeout: float = 90) -> tuple[EngineSupervisor, Ready]:
    sup = EngineSupervisor()
    sup.start(plan)
    state = sup.wait_for((Ready, Failed), timeout)
    assert isinstance(state, Ready), getattr(state, "message", state)
    return sup, state


def answer(client: EngineClient, messages=PROMPT, **params) -> tuple[str, Finished]:
    text, done = [], None
    for ev in client.stream_chat(messages, **{**GREEDY, **params}):
        if isinstance(ev, Delta):
            text.append(ev.text)
        else:
            done = ev
    assert done is not None
    return "".join(text), done
