"""The chat service: conversations kept in the store, answers from the engine's API.

Qt-free; the window's chat pane and `layerlab chat` are both views of it, on the same store,
so a conversation started in one continues in the other. It talks to the engine ONLY through
its OpenAI-compatible API (EngineClient): chat completions with the model's own template,
plain completions (Continue, and a model without a template with the person's pick), and the
tokenize route for the context meter.

Turns (send, regenerate, edit, continue) block until the answer ends: call them off a GUI
thread. Events about the answer go to `on_event` from that thread; `stop()` from any thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from layerlab.core.chat.store import (
    AnswerStats,
    ConversationInfo,
    ConversationSettings,
    Message,
    Store,
)
from layerlab.core.chat.templates import TEMPLATES
from layerlab.core.chat.throughput import AnswerClock
from layerlab.core.engine.client import (
    Delta,
    EngineClient,
    EngineRefused,
    EngineUnavailable,
    Finished,
)
from layerlab.core.engine.supervisor import EngineState, Failed, Ready

ANSWER_ROOM = 256  # tokens kept free for the answer when judging whether a message fits
STALE_ANSWER_S = 10.0  # an unfinished answer untouched this long: its writer is gone


class NoModel(RuntimeError):
    """No model is loaded: there is nothing to answer."""


class Busy(RuntimeError):
    """An answer is already being written."""


class NoChatTemplate(RuntimeError):
    """The model's GGUF has no chat template and the conversation has no template chosen."""

    def __init__(self) -> None:
        super().__init__(
            "This model has no chat template (it is a base model). Pick a template for it, "
            "or plain completion, so its answers are formatted as it expects."
        )


@dataclass(frozen=True)
class ContextFull(Exception):
    """The message would not fit in the loaded context: the person chooses what to do."""

    needed: int  # tokens the prompt would take, with room for the answer
    n_ctx: int

    def __str__(self) -> str:
        return (
            f"This message would need about {self.needed:,} tokens, more than the "
            f"{self.n_ctx:,} the model is loaded with. Start a new chat, drop the oldest "
            "turns, or load the model again with a longer context."
        )


OVERFLOW_CHOICES = ("new chat", "drop oldest turns", "reload with a longer context")


@dataclass(frozen=True)
class ContextMeter:
    used: int  # tokens of the conversation as the model reads it
    n_ctx: int

    @property
    def fraction(self) -> float:
        return self.used / self.n_ctx if self.n_ctx else 0.0

    def text(self) -> str:
        return f"{self.used:,} / {self.n_ctx:,} tokens"


# -- what an answer tells its listener ---------------------------------------------------
@dataclass(frozen=True)
class Started:
    message: Message  # the (empty, or continued) answer


@dataclass(frozen=True)
class Piece:
    text: str


@dataclass(frozen=True)
class Ended:
    message: Message  # as stored: text, how it ended, stats


AnswerEvent = Started | Piece | Ended


class ChatService:
    """One head's conversations. `client` gives the engine's client (None: nothing loaded);
    `engine_state` the supervisor's state: where the model runs (for the stats), and what
    happened when an answer broke off (a lost worker)."""

    def __init__(
        self,
        client: Callable[[], EngineClient | None],
        store_path: Path | None = None,
        *,
        store: Store | None = None,
        engine_state: Callable[[], EngineState | None] = lambda: None,
    ):
        self._get_client = client
        self._store_path = store_path
        self._store = store
        self._engine_state = engine_state
        self._lock = threading.Lock()
        self._turn = threading.Lock()
        self._active: EngineClient | None = None
        self._stopping = threading.Event()
        self._template_cache: tuple[str, bool] | None = None  # (engine url, has a template)

    # -- the store, opened when first needed ------
    @property
    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = Store(self._store_path)
                self._store.recover_unfinished(STALE_ANSWER_S)
            return self._store

    def close(self) -> None:
        self.stop()
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()

    # -- conversations ------
    def new_conversation(
        self, title: str = "", settings: ConversationSettings | None = None
    ) -> ConversationInfo:
        return self.store.create_conversation(title, settings)

    def conversations(self) -> list[ConversationInfo]:
        return self.store.conversations()

    def messages(self, cid: str) -> list[Message]:
        """The conversation as shown: root to the current leaf."""
        return self.store.current_path(cid)

    def newest_messages(
        self, cid: str, n: int
    ) -> tuple[list[tuple[Message, tuple[int, int]]], bool]:
        """The newest `n` messages as shown, each with its "< 2/3 >" place, read without the
        rest; and whether they reach back to the first message."""
        return self.store.path_tail(cid, n)

    def settings(self, cid: str) -> ConversationSettings:
        return self.store.settings(cid)

    def set_settings(self, cid: str, settings: ConversationSettings) -> None:
        self.store.set_settings(cid, settings)

    # -- the model's template ------
    def model_has_template(self) -> bool:
        """Whether the loaded model carries a chat template (asked once per engine)."""
        client = self._client()
        cached = self._template_cache
        if cached and cached[0] == client.url:
            return cached[1]
        has = bool(client.tokenize(text="")["chat_template"])
        self._template_cache = (client.url, has)
        return has

    def needs_template(self, cid: str) -> bool:
        """True when the person must pick a template before this conversation can go on."""
        return not self.model_has_template() and not self.settings(cid).template

    def choose_template(self, cid: str, key: str) -> None:
        if key not in TEMPLATES:
            raise ValueError(f"There is no template '{key}'; choose one of {', '.join(TEMPLATES)}.")
        self.set_settings(cid, replace(self.settings(cid), template=key))

    # -- the context meter ------
    def context(self, cid: str, draft: str = "") -> ContextMeter:
        """Tokens the conversation (plus `draft`, the message being typed) takes of the
        loaded context, counted by the model's own tokenizer."""
        client = self._client()
        messages = self._for_engine(cid, self.messages(cid))
        if draft:
            messages.append({"role": "user", "content": draft})
        answer = self._count(client, cid, messages)
        return ContextMeter(answer["tokens"], int(answer.get("n_ctx") or 0))

    def overflow(self, cid: str, meter: ContextMeter) -> ContextFull | None:
        """What sending would meet, judged from a meter reading taken with the draft: the
        overflow choice (ContextFull), or None when it fits or the conversation already
        drops its oldest turns."""
        needed = meter.used + self._room(cid)
        if not meter.n_ctx or needed <= meter.n_ctx or self.settings(cid).drop_oldest:
            return None
        return ContextFull(needed, meter.n_ctx)

    def _count(self, client: EngineClient, cid: str, messages: list[dict]) -> dict:
        template = self._template(cid)
        if template is None:
            return client.tokenize(messages=messages)
        return client.tokenize(text=TEMPLATES[template].render(messages))

    def _fit(self, client: EngineClient, cid: str, messages: list[dict], room: int) -> list[dict]:
        """`messages` if they fit with `room` tokens to spare; with the conversation's "drop
        oldest turns", without its oldest turns; else ContextFull."""
        answer = self._count(client, cid, messages)
        n_ctx = int(answer.get("n_ctx") or 0)
        needed = answer["tokens"] + room
        if not n_ctx or needed <= n_ctx:
            return messages
        if not self.settings(cid).drop_oldest:
            raise ContextFull(needed, n_ctx)
        head = [m for m in messages[:1] if m["role"] == "system"]
        body = messages[len(head) :]
        while len(body) > 1:
            body = body[1:]
            while len(body) > 1 and body[0]["role"] != "user":
                body = body[1:]
            answer = self._count(client, cid, head + body)
            if answer["tokens"] + room <= n_ctx:
                return head + body
        raise ContextFull(needed, n_ctx)

    def drop_oldest_turns(self, cid: str, on: bool = True) -> None:
        """The person's overflow choice: from now on, send only the newest turns that fit."""
        self.set_settings(cid, replace(self.settings(cid), drop_oldest=on))

    # -- turns ------
    def send(
        self, cid: str, text: str, on_event: Callable[[AnswerEvent], None] | None = None
    ) -> Message:
        """Say `text` at the end of the current branch and write the answer; returns it."""
        self._check_ready(cid)
        leaf = self.store.conversation(cid).current_leaf
        # what is sent, fitted (counted by the engine's tokenizer) once: before the message is
        # kept, so a message that would overflow is not, and then sent as it was counted. A
        # second count cost a 15k-token conversation ~65 ms more before its first token
        path = self.store.current_path(cid, leaf) if leaf else []
        asked = [*self._for_engine(cid, path), {"role": "user", "content": text}]
        fitted = self._fit(self._client(), cid, asked, self._room(cid))
        user = self.store.add_message(cid, leaf, "user", text)
        return self._answer(cid, user.id, on_event, fitted=fitted)

    def regenerate(
        self, answer_id: str, on_event: Callable[[AnswerEvent], None] | None = None
    ) -> Message:
        """A new answer beside `answer_id` (kept as an alternative: "< 2/2 >")."""
        old = self.store.message_by_id(answer_id)
        if old.role != "assistant" or old.parent_id is None:
            raise ValueError("Only an answer can be regenerated.")
        self._check_ready(old.conversation_id)
        return self._answer(old.conversation_id, old.parent_id, on_event)

    def edit(
        self, message_id: str, text: str, on_event: Callable[[AnswerEvent], None] | None = None
    ) -> Message:
        """Edit one of the person's messages and resend: a new branch beside the old one."""
        old = self.store.message_by_id(message_id)
        if old.role != "user":
            raise ValueError("Only your own messages can be edited and resent.")
        cid = old.conversation_id
        self._check_ready(cid)
        user = self.store.add_message(cid, old.parent_id, "user", text)
        return self._answer(cid, user.id, on_event)

    def continue_answer(
        self, answer_id: str, on_event: Callable[[AnswerEvent], None] | None = None
    ) -> Message:
        """Go on writing an answer that was cut off (length, stopped, a lost worker)."""
        old = self.store.message_by_id(answer_id)
        if old.role != "assistant":
            raise ValueError("Only an answer can be continued.")
        cid = old.conversation_id
        self._check_ready(cid)
        self.store.set_leaf(cid, answer_id)
        return self._answer(cid, old.parent_id, on_event, continuing=old)

    def stop(self) -> None:
        """Stop the answer being written (it keeps its text, 'stopped')."""
        self._stopping.set()
        client = self._active
        if client is not None:
            client.cancel()

    @property
    def answering(self) -> bool:
        return self._turn.locked()

    # -- branches and deleting ------
    def switch_branch(self, message_id: str, step: int) -> str:
        return self.store.switch_branch(message_id, step)

    def branch_position(self, message_id: str) -> tuple[int, int]:
        return self.store.branch_position(message_id)

    def delete_message(self, message_id: str) -> str:
        return self.store.delete_message(message_id)

    def undo_delete_message(self, message_id: str) -> None:
        self.store.undo_delete_message(message_id)

    # -- the inside of a turn ------
    def _client(self) -> EngineClient:
        client = self._get_client()
        if client is None:
            raise NoModel("No model is loaded. Load one to chat.")
        return client

    def _check_ready(self, cid: str) -> None:
        if self.store.read_only:
            from layerlab.core.chat.store import StoreReadOnly

            raise StoreReadOnly(self.store.message)
        if self.needs_template(cid):
            raise NoChatTemplate()

    def _room(self, cid: str) -> int:
        return min(ANSWER_ROOM, self.settings(cid).sampling.max_tokens)

    def _template(self, cid: str) -> str | None:
        """The person's pick for a model without a template; None: the model's own."""
        if self.model_has_template():
            return None
        return self.settings(cid).template or None

    def _for_engine(self, cid: str, path: list[Message]) -> list[dict]:
        settings = self.settings(cid)
        out = [{"role": "system", "content": settings.system_prompt}]
        out = out if settings.system_prompt else []
        out += [{"role": m.role, "content": m.content} for m in path]
        return out

    def _answer(
        self,
        cid: str,
        parent_id: str | None,
        on_event: Callable[[AnswerEvent], None] | None,
        continuing: Message | None = None,
        fitted: list[dict] | None = None,
    ) -> Message:
        if not self._turn.acquire(blocking=False):
            raise Busy("An answer is already being written; stop it first.")
        try:
            emit = on_event or (lambda e: None)
            return self._answer_locked(cid, parent_id, emit, continuing, fitted)
        finally:
            self._turn.release()

    def _answer_locked(
        self,
        cid: str,
        parent_id: str | None,
        emit: Callable[[AnswerEvent], None],
        continuing: Message | None,
        fitted: list[dict] | None = None,
    ) -> Message:
        client = self._client()
        settings = self.settings(cid)
        messages = fitted
        if messages is None:  # fitted here: a regenerate, an edit, a continue
            path = self.store.current_path(cid, parent_id) if parent_id else []
            messages = self._fit(client, cid, self._for_engine(cid, path), self._room(cid))
        params = settings.sampling.params()
        template = self._template(cid)
        if continuing is not None:
            answer = continuing
            self.store.reopen_answer(answer.id)
            if template is None:
                prompt = client.tokenize(messages=messages)["prompt"] + answer.content
            else:
                prompt = TEMPLATES[template].render(messages) + answer.content
            stream = client.stream_completion(prompt, **params, stop=list(_stops(template)))
        else:
            answer = self.store.add_message(cid, parent_id, "assistant", "", finish="")
            if template is None:
                stream = client.stream_chat(messages, **params)
            else:
                prompt = TEMPLATES[template].render(messages)
                stream = client.stream_completion(prompt, **params, stop=list(_stops(template)))
        self._stopping.clear()
        self._active = client
        writer = self.store.writer(answer.id)
        clock = AnswerClock()
        done: Finished | None = None
        problem = ""
        emit(Started(self.store.message_by_id(answer.id)))
        try:
            for ev in stream:
                if isinstance(ev, Delta):
                    clock.piece()
                    writer.add(ev.text)
                    emit(Piece(ev.text))
                else:
                    done = ev
        except (EngineUnavailable, EngineRefused) as e:
            problem = str(e)
        except Exception as e:  # never leave an answer half-marked
            problem = f"Unexpected error: {e}"
        finally:
            self._active = None
            writer.close()
        if done is None and self._stopping.is_set():
            done = Finished("stop", stopped=True)
        ended, note = "error", ""
        if done is not None:
            ended = "stopped" if done.stopped else (done.finish_reason or "stop")
            if ended not in ("stop", "length", "stopped"):
                ended = "stop"
        else:
            why = self._why_cut() or problem
            note = f"The answer was cut off: {why}" if why else "The answer was cut off."
        rates = clock.finish(done.timings if done else {})
        usage = done.usage if done else {}
        tokens = usage.get("completion_tokens") if usage else None
        stats = AnswerStats(
            ttft_s=rates.ttft_s,
            prompt_tps=rates.prompt_tps,
            gen_tps=rates.generation_tps,
            prompt_tokens=usage.get("prompt_tokens") if usage else None,
            tokens=tokens if tokens is not None else rates.tokens,
            ended=ended,
            ran_on=self._where(),
        )
        if continuing is not None and continuing.stats and continuing.stats.tokens:
            stats = replace(stats, tokens=(stats.tokens or 0) + continuing.stats.tokens)
        self.store.finish_answer(answer.id, ended, stats, note)
        final = self.store.message_by_id(answer.id)
        emit(Ended(final))
        return final

    def _where(self) -> str:
        state = self._engine_state()
        return state.placement_text if isinstance(state, Ready) else ""

    def _why_cut(self) -> str:
        """The engine's own words when it failed under the answer (a worker lost, it died);
        it may take a moment to notice, so wait briefly for its verdict."""
        for _ in range(20):
            state = self._engine_state()
            if isinstance(state, Failed):
                return state.message
            if state is None:
                return ""
            time.sleep(0.05)
        return ""


def _stops(template: str | None) -> tuple[str, ...]:
    return TEMPLATES[template].stop if template else ()
