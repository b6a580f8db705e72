"""Reading a tool call as it is written (no model needed): whatever pieces the model's tokens
cut it into, the arguments handed out join up to exactly the call's arguments."""

from __future__ import annotations

import json

import pytest

from layerlab.core.engine.tool_calls import CallStream

ARGS = '{"city": "Os\\"lo {x}", "days": [2]}'
CALL = '<tool_call>\n{"name": "get_weather", "arguments": ' + ARGS + "}\n</tool_call>"


def deltas_for(pieces: list[str]) -> tuple[CallStream, list[dict]]:
    stream = CallStream()
    out = [d for p in pieces for d in stream.feed(p)]
    return stream, out


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, len(CALL)])
def test_arguments_join_up_whatever_the_pieces(size):
    stream, out = deltas_for([CALL[i : i + size] for i in range(0, len(CALL), size)])
    head, *rest = out
    assert head["id"] == stream.call_id and head["type"] == "function"
    assert head["function"] == {"name": "get_weather", "arguments": ""}
    assert "".join(d["function"]["arguments"] for d in rest) == ARGS == stream.arguments
    assert json.loads(stream.arguments) == {"city": 'Os"lo {x}', "days": [2]}
    assert stream.complete
    if size < 8:
        assert len(rest) > 3  # handed out as written, not once at the end


def test_nothing_is_handed_out_before_the_name_is_known():
    stream, out = deltas_for(['<tool_call>\n{"name": "get_wea'])
    assert out == [] and stream.call_id is None


def test_scalar_arguments_wait_for_the_end():
    stream, out = deltas_for(['<tool_call>\n{"name": "f", "arguments": 3}\n</tool_call>'])
    assert len(out) == 1 and stream.arguments == "" and not stream.complete
