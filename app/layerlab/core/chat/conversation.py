"""A conversation in memory. (Storage in SQLite arrives with the chat-history issue; this
shape — ordered messages with roles, plus per-answer numbers — is what it will store.)"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass
class Message:
    role: Role
    content: str
    created: float = field(default_factory=time.time)
    # for answers: how it ended ("stop", "length", "stopped", "error: ...") and its numbers
    finish: str = ""
    timings: dict = field(default_factory=dict)


@dataclass
class Conversation:
    messages: list[Message] = field(default_factory=list)
    system_prompt: str = ""

    def add_user(self, text: str) -> Message:
        m = Message("user", text)
        self.messages.append(m)
        return m

    def start_answer(self) -> Message:
        m = Message("assistant", "")
        self.messages.append(m)
        return m

    def for_engine(self) -> list[dict]:
        """The messages to send: everything said so far, minus an empty answer in progress."""
        out = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for m in self.messages:
            if m.role == "assistant" and not m.content and not m.finish:
                continue
            out.append({"role": m.role, "content": m.content})
        return out
