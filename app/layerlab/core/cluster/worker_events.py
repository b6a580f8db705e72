"""Reading the lines of `layerlab worker --share --json-events` (written by sharing.py).

The worker's stdout carries llama.cpp's RPC lines too ("Client connection closed" as the
sharing starts, from its own thread). A line of theirs whose newline had not been written yet
put an event at the end of it; a reader that looked only at lines starting with "{" lost that
event (the window's switch once never showed its code). No imports beyond json: the window
reads these lines from its start.
"""

from __future__ import annotations

import json


def read_line(line: str) -> tuple[str, dict | None]:
    """(the text in `line` that is not an event, the event in it or None)."""
    at = line.find('{"event"')
    if at < 0:
        return line, None
    try:
        event = json.loads(line[at:])
    except ValueError:
        return line[:at], None
    return line[:at], event if isinstance(event, dict) else None
