"""Chat templates for a model whose GGUF carries none (a base model), and plain completion.

A model with its own template is always formatted by it (the engine applies the GGUF's
template); these are only for the person's pick when the model has none, so the answer is
never an empty or silently mis-formatted one (llama-cpp-python would quietly fall back to
Llama 2's format).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Template:
    key: str
    name: str  # as the person reads it in the list
    stop: tuple[str, ...]

    def render(self, messages: list[dict], open_answer: bool = True) -> str:
        """The prompt for `messages`; with open_answer, it ends where the answer begins."""
        return _RENDER[self.key](messages, open_answer)


def _chatml(messages: list[dict], open_answer: bool) -> str:
    out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return out + ("<|im_start|>assistant\n" if open_answer else "")


def _alpaca(messages: list[dict], open_answer: bool) -> str:
    parts = []
    for m in messages:
        if m["role"] == "system":
            parts.append(m["content"] + "\n\n")
        elif m["role"] == "user":
            parts.append(f"### Instruction:\n{m['content']}\n\n")
        else:
            parts.append(f"### Response:\n{m['content']}\n\n")
    return "".join(parts) + ("### Response:\n" if open_answer else "")


def _transcript(messages: list[dict], open_answer: bool) -> str:
    names = {"system": "", "user": "User: ", "assistant": "Assistant: "}
    out = "".join(f"{names.get(m['role'], '')}{m['content']}\n" for m in messages)
    return out + ("Assistant:" if open_answer else "")


def _plain(messages: list[dict], _open_answer: bool) -> str:
    # The text so far, as written: the model continues it.
    return "\n\n".join(m["content"] for m in messages if m["content"])


_RENDER = {"chatml": _chatml, "alpaca": _alpaca, "transcript": _transcript, "plain": _plain}

TEMPLATES: dict[str, Template] = {
    "chatml": Template(
        "chatml", "ChatML (<|im_start|> … <|im_end|>)", ("<|im_end|>", "<|im_start|>")
    ),
    "alpaca": Template("alpaca", "Alpaca (### Instruction / ### Response)", ("### Instruction:",)),
    "transcript": Template("transcript", "Simple transcript (User: / Assistant:)", ("\nUser:",)),
    "plain": Template("plain", "Plain completion (the model continues your text)", ()),
}


def gguf_chat_template(path: str | Path) -> str:
    """The chat template a GGUF file carries ('' when none: a base model), from its header."""
    from layerlab.core.gguf import read_parts

    parts = read_parts(path)
    return str(parts[0][1].kv.get("tokenizer.chat_template", "") or "") if parts else ""
