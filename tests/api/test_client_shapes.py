"""The requests Open WebUI, Continue and SillyTavern really send (fixtures/*.json, each with
the source it was read from), replayed against the engine and against `serve`."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("*.json"))


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_client_request_is_answered(api, fixture):
    shape = json.loads(fixture.read_text())
    body = json.loads(json.dumps(shape["body"]).replace("{model}", api.model))
    with httpx.stream(
        "POST", api.base + shape["path"], headers=api.headers, json=body, timeout=120
    ) as r:
        if r.status_code != 200:
            r.read()
        assert r.status_code == 200, r.text
        events = [ln[6:] for ln in r.iter_lines() if ln.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert not [c for c in chunks if "error" in c]
    text = "".join(
        (c["choices"][0].get("delta") or {}).get("content") or c["choices"][0].get("text") or ""
        for c in chunks
        if c["choices"]
    )
    assert text.strip()
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
