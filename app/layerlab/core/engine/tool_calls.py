"""Tool calls and JSON answers: the prompt that offers the tools, the grammar that holds the
answer to their schemas, and reading the call back out of the text.

The call format is the one Hermes/Qwen-style chat templates teach their models:
    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>
A template that knows tools renders them itself; for one that does not (SmolLM2's ChatML) the
tools are described in a system message in that format. Either way a grammar built from the
schemas makes the call valid JSON for the chosen function: the model cannot get it wrong.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

OPEN, CLOSE = "<tool_call>", "</tool_call>"


class SchemaRefused(ValueError):
    """A JSON schema the grammar converter cannot turn into a grammar."""


def schema_grammar(schema: dict, root: str = "root") -> str:
    """GBNF for JSON that meets `schema`, its top rule named `root`."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        gbnf = json_schema_to_gbnf(json.dumps(schema))
    except Exception as e:  # the converter raises plain exceptions for what it cannot do
        raise SchemaRefused(f"the JSON schema cannot be turned into a grammar: {e}") from e
    if root != "root":
        gbnf = re.sub(r"(?m)^root ::=", f"{root} ::=", gbnf)
    return gbnf


def any_json_object_grammar() -> str:
    return schema_grammar({"type": "object"})


def call_schema(tools: list[dict]) -> dict:
    """The schema of one call to any of `tools` ({"name", "arguments"})."""
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t["function"]["name"]},
                "arguments": t["function"].get("parameters") or {"type": "object"},
            },
            "required": ["name", "arguments"],
        }
        for t in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def call_grammar(tools: list[dict], required: bool) -> str:
    """GBNF for a tool call (required) or either a call or a plain answer (auto)."""
    body = schema_grammar(call_schema(tools), root="call")
    tag = f'"{OPEN}\\n" call "\\n{CLOSE}"'
    if required:
        return f"root ::= {tag}\n{body}"
    # A plain answer may not begin with '<', so it can never be half a tool call.
    return f"root ::= {tag} | free\nfree ::= [^<] [^\\x00]*\n{body}"


def tools_system_text(tools: list[dict]) -> str:
    """What a model whose template knows no tools is told about them."""
    lines = [
        "You may call functions to answer. They are described in JSON here:",
        "<tools>",
        *(json.dumps(t["function"], ensure_ascii=False) for t in tools),
        "</tools>",
        "To call one, answer with only this, filled in:",
        f'{OPEN}\n{{"name": <function name>, "arguments": <arguments as JSON>}}\n{CLOSE}',
    ]
    return "\n".join(lines)


def template_knows_tools(template: str) -> bool:
    return "tools" in template


def for_template(messages: list[dict], tools: list[dict] | None, knows_tools: bool) -> list[dict]:
    """Messages as the template can render them: earlier calls and tool answers in the call
    format when the template has none of its own, and the tools in the system message."""
    out: list[dict] = []
    for m in messages:
        m = dict(m)
        if not knows_tools:
            if m.get("tool_calls"):
                calls = [
                    f'{OPEN}\n{{"name": {json.dumps(c["function"]["name"])}, "arguments": '
                    f"{c['function']['arguments'] or '{}'}}}\n{CLOSE}"
                    for c in m.pop("tool_calls")
                ]
                m["content"] = "\n".join([*([m["content"]] if m.get("content") else []), *calls])
            if m["role"] in ("tool", "function"):
                m = {
                    "role": "user",
                    "content": f"<tool_response>\n{m.get('content') or ''}\n</tool_response>",
                }
        if m.get("content") is None:
            m["content"] = ""
        if m["role"] == "developer":
            m["role"] = "system"
        out.append(m)
    if tools and not knows_tools:
        text = tools_system_text(tools)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{text}"}
        else:
            out.insert(0, {"role": "system", "content": text})
    return out


@dataclass(frozen=True)
class Call:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it

    def to_dict(self, index: int | None = None) -> dict:
        d = {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }
        return {"index": index, **d} if index is not None else d


def might_be_call(text: str) -> bool:
    """Whether an answer that has begun as `text` may still turn into a tool call."""
    stripped = text.lstrip()
    return OPEN.startswith(stripped) or stripped.startswith(OPEN)


def read_calls(text: str) -> list[Call] | None:
    """The calls in an answer, or None when it is a plain answer."""
    if not text.lstrip().startswith(OPEN):
        return None
    calls = []
    for block in re.findall(re.escape(OPEN) + r"(.*?)(?:" + re.escape(CLOSE) + "|$)", text, re.S):
        try:
            data = json.loads(block.strip())
        except json.JSONDecodeError:
            continue  # cut off by max_tokens: not a call
        if not isinstance(data, dict) or "name" not in data:
            continue
        calls.append(
            Call(
                f"call_{uuid.uuid4().hex[:24]}",
                str(data["name"]),
                json.dumps(data.get("arguments", {}), ensure_ascii=False),
            )
        )
    return calls or None


# The start of a call as the grammar writes it: the name always comes before the arguments
# (the converter puts required properties in their schema order, and call_schema lists name
# first), so the name is known before the first character of the arguments.
_CALL_HEAD = re.compile(
    r"\s*" + re.escape(OPEN) + r'\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:'
)


class CallStream:
    """A tool call read as it is written, so a stream can hand it out the way OpenAI does:
    first the call's id and name with empty arguments, then each new stretch of the
    arguments' JSON text (which, joined, is the arguments). Only the first call, and only
    object or array arguments, go piece by piece; anything else waits for the end."""

    def __init__(self) -> None:
        self.text = ""
        self.call_id: str | None = None  # set once the name is known
        self.arguments = ""  # the arguments' text handed out so far
        self.complete = False  # the arguments' JSON value has ended
        self._at = 0  # where scanning goes on
        self._state = "head"  # head -> before (the value) -> value -> done; or "whole"
        self._depth = 0
        self._in_string = False
        self._escape = False

    def feed(self, text: str) -> list[dict]:
        """The `tool_calls` delta entries that `text` makes ready (maybe none)."""
        self.text += text
        out: list[dict] = []
        if self._state == "head":
            m = _CALL_HEAD.match(self.text)
            if m is None:
                return out
            self.call_id = f"call_{uuid.uuid4().hex[:24]}"
            self._at, self._state = m.end(), "before"
            out.append(
                {
                    "index": 0,
                    "id": self.call_id,
                    "type": "function",
                    "function": {"name": json.loads(m.group(1)), "arguments": ""},
                }
            )
        piece = self._scan()
        if piece:
            self.arguments += piece
            out.append({"index": 0, "function": {"arguments": piece}})
        return out

    def _scan(self) -> str:
        """The arguments' characters since the last scan (a JSON value followed to its end
        by depth, outside strings)."""
        i, start = self._at, self._at if self._state == "value" else None
        while i < len(self.text) and self._state in ("before", "value"):
            c = self.text[i]
            if self._state == "before":
                if c.isspace():
                    i += 1
                    continue
                if c not in "{[":
                    self._state = "whole"  # a bare scalar: handed out whole at the end
                    break
                self._state, start = "value", i
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif c == "\\":
                    self._escape = True
                elif c == '"':
                    self._in_string = False
            elif c == '"':
                self._in_string = True
            elif c in "{[":
                self._depth += 1
            elif c in "}]":
                self._depth -= 1
                if self._depth == 0:
                    self._state, self.complete = "done", True
            i += 1
        self._at = i
        return self.text[start:i] if start is not None else ""
