"""The OpenAI routes: chat completions, completions, embeddings, models; and the llama.cpp
server conveniences clients probe (/tokenize, /detokenize, /props).

Every request is read through openai_protocol (a 400 naming the parameter for anything we
would otherwise ignore), prepared (template, grammar, tokens: a prompt that does not fit is
the client's 400, before any answer starts), then answered by the engine's one generation
line, streamed or collected.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from layerlab.core.engine import tool_calls
from layerlab.core.engine.batch_decoder import Outlet
from layerlab.core.engine.model_session import (
    ContextTooLong,
    Ending,
    ModelSession,
    Piece,
    Sampling,
    TokenLogprob,
)
from layerlab.core.engine.openai_protocol import (
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    RequestRefused,
    TokenizeRequest,
    sort_fields,
)


def refuse(status: int, message: str, kind: str, param: str | None = None, code: str | None = None):
    """An error in the OpenAI shape, naming the parameter at fault."""
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": code}},
        status_code=status,
    )


def _known(kind: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in kind.model_fields.items()} | set(kind.model_fields)


async def read_request(request: Request, kind: type[BaseModel]):
    """The request as `kind`, or the 400 that says what is wrong with it."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as e:
        return refuse(400, f"The request body is not valid JSON: {e}", "invalid_request_error")
    if not isinstance(body, dict):
        return refuse(400, "The request body must be a JSON object.", "invalid_request_error")
    try:
        if kind in (ChatRequest, CompletionRequest):
            body = sort_fields(body, _known(kind))
        return kind.model_validate(body)
    except RequestRefused as e:
        return refuse(400, e.message, "invalid_request_error", e.param, e.code)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        return refuse(400, f"Invalid request: {where}: {msg}", "invalid_request_error", where)


# -- what one request asks of the model --------------------------------------------------


@dataclass
class Job:
    """A prepared request: prompts as tokens, how to sample, and how to shape the answer."""

    kind: str  # "chat" or "text"
    prompts: list[list[int]]
    sampling: Sampling
    n: int
    echo: list[str] = field(default_factory=list)  # per prompt, for completions with echo
    tools: bool = False  # the answer may be a tool call
    stream: bool = False
    include_usage: bool = False
    lane: str = "api"  # "window": the chat window's own request (api.Line)
    start: Callable[[threading.Event, Outlet], int] | None = None  # set by run_job


def sampling_of(req: Any, grammar: str | None, top_logprobs: int | None) -> Sampling:
    return Sampling(
        max_tokens=req.token_limit(),
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        min_p=req.min_p,
        typical_p=req.typical_p,
        repeat_penalty=req.repeat_penalty,
        repeat_last_n=req.repeat_last_n,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        mirostat_mode=req.mirostat_mode,
        mirostat_tau=req.mirostat_tau,
        mirostat_eta=req.mirostat_eta,
        seed=req.seed if req.seed is None or req.seed >= 0 else None,  # -1: a new one each time
        stop=list(req.stop or []),
        grammar=grammar,
        top_logprobs=top_logprobs,
        logit_bias={int(k): v for k, v in (req.logit_bias or {}).items()} or None,
    )


def prepare_chat(session: ModelSession, req: ChatRequest) -> Job:
    template = session.chat_template()
    if not template:
        raise RequestRefused(
            "This model has no chat template (it is a base model): send the text to "
            "/v1/completions instead.",
            "messages",
            "no_chat_template",
        )
    tools = [t.model_dump() for t in req.tools or []]
    choice = req.tool_choice or ("auto" if tools else "none")
    if choice == "none":
        tools = []
    if not isinstance(choice, str):
        tools = [t for t in tools if t["function"]["name"] == choice.function["name"]]
    grammar = None
    try:
        if tools:
            if req.response_format and req.response_format.type != "text":
                raise RequestRefused(
                    "response_format cannot be combined with tools here: set tool_choice to "
                    "'none' for a JSON answer, or leave response_format out.",
                    "response_format",
                )
            grammar = tool_calls.call_grammar(tools, required=choice != "auto")
        elif req.response_format and req.response_format.type == "json_schema":
            grammar = tool_calls.schema_grammar(req.response_format.json_schema.schema_)  # type: ignore[union-attr]
        elif req.response_format and req.response_format.type == "json_object":
            schema = req.response_format.schema_
            grammar = (
                tool_calls.schema_grammar(schema)
                if schema
                else tool_calls.any_json_object_grammar()
            )
        elif req.json_schema:
            grammar = tool_calls.schema_grammar(req.json_schema)
    except tool_calls.SchemaRefused as e:
        raise RequestRefused(str(e), "response_format" if not tools else "tools") from e
    knows = tool_calls.template_knows_tools(template)
    messages = [m.model_dump(exclude_none=True) for m in req.messages]
    for m in messages:  # tool_calls back to plain dicts the template can read
        for c in m.get("tool_calls") or []:
            c.setdefault("type", "function")
    messages = tool_calls.for_template(messages, tools or None, knows)
    try:
        prompt = session.render(messages, tools=tools or None if knows else None)
    except Exception as e:  # a template's raise_exception: the messages break its rules
        raise RequestRefused(
            f"The model's chat template refused these messages: {e}", "messages"
        ) from e
    tokens = session.prompt_tokens(prompt, add_bos=False)
    _fits(session, tokens, "messages")
    return Job(
        "chat",
        [tokens],
        sampling_of(req, grammar, (req.top_logprobs or 0) if req.logprobs else None),
        req.n,
        tools=bool(tools),
        stream=req.stream,
        include_usage=req.include_usage,
    )


def prepare_completion(session: ModelSession, req: CompletionRequest) -> Job:
    prompts, echo = [], []
    for p in req.prompts():
        if isinstance(p, str):
            tokens = session.prompt_tokens(p)
            echo.append(p)
        else:
            tokens = list(p)
            echo.append(session.detokenize(tokens))
        if not tokens:
            raise RequestRefused("The prompt is empty.", "prompt")
        _fits(session, tokens, "prompt")
        prompts.append(tokens)
    grammar = None
    if req.json_schema:
        try:
            grammar = tool_calls.schema_grammar(req.json_schema)
        except tool_calls.SchemaRefused as e:
            raise RequestRefused(str(e), "json_schema") from e
    return Job(
        "text",
        prompts,
        sampling_of(req, grammar, req.alternatives()),
        req.n,
        echo=echo if req.echo else [],
        stream=req.stream,
        include_usage=req.include_usage,
    )


def _fits(session: ModelSession, tokens: list[int], param: str) -> None:
    n_ctx = session.n_ctx()
    if len(tokens) >= n_ctx:
        e = ContextTooLong(n_ctx, len(tokens))
        raise RequestRefused(str(e), param, "context_length_exceeded")


def run_job(session: ModelSession, job: Job) -> Callable[[threading.Event, Outlet], int]:
    """What starts the job: every answer (n per prompt) submitted to be decoded together in
    as many slots as are free, their (choice index, Piece | Ending) interleaved into the
    outlet as they come (each chunk names its index). It returns how many answers."""

    asks = []
    for tokens in job.prompts:
        for k in range(job.n):
            sampling = job.sampling
            if sampling.seed is not None and k:
                # the same seed for each would give n equal answers
                sampling = Sampling(**{**sampling.__dict__, "seed": sampling.seed + k})
            asks.append((tokens, sampling))

    def start(stop: threading.Event, outlet: Outlet) -> int:
        session.submit(asks, stop, outlet, job.lane)  # type: ignore[arg-type]
        return len(asks)

    return start


# -- shaping answers -----------------------------------------------------------------------


def chat_logprobs(items: list[TokenLogprob]) -> dict:
    return {
        "content": [
            {
                "token": t.token,
                "logprob": t.logprob,
                "bytes": t.bytes,
                "top_logprobs": [
                    {"token": a.token, "logprob": a.logprob, "bytes": a.bytes} for a in t.top
                ],
            }
            for t in items
        ]
    }


def text_logprobs(items: list[TokenLogprob], offset: int) -> dict:
    offsets, at = [], offset
    for t in items:
        offsets.append(at)
        at += len(t.token)
    return {
        "tokens": [t.token for t in items],
        "token_logprobs": [t.logprob for t in items],
        "top_logprobs": [{a.token: a.logprob for a in t.top} for t in items],
        "text_offset": offsets,
    }


class Usage:
    def __init__(self) -> None:
        self.prompt = 0
        self.completion = 0
        self.counted: set[int] = set()

    def add(self, prompt_index: int, ending: Ending) -> None:
        if prompt_index not in self.counted:  # n answers to one prompt read it once
            self.counted.add(prompt_index)
            self.prompt += ending.prompt_tokens
        self.completion += ending.completion_tokens

    def to_dict(self) -> dict:
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        }


class ChoiceState:
    """One choice being answered: its text so far, and (with tools) whether it is a call.
    With `piecewise`, a call's arguments are handed out as they are written (a stream);
    without, the call comes whole at the end (a collected answer)."""

    def __init__(self, tools: bool, piecewise: bool = False):
        self.tools = tools
        self.text = ""
        self.held = ""  # with tools: text that may still turn out to be a call
        self.is_plain = not tools
        self.logprobs: list[TokenLogprob] = []
        self.call = tool_calls.CallStream() if tools and piecewise else None

    def feed(self, piece: Piece) -> tuple[str, list[dict]]:
        """(the text that can be handed out as content now, tool-call delta entries)."""
        self.text += piece.text
        self.logprobs.extend(piece.logprobs)
        if self.is_plain:
            return piece.text, []
        self.held += piece.text
        if tool_calls.might_be_call(self.held):
            return "", self.call.feed(piece.text) if self.call else []
        self.is_plain = True
        out, self.held = self.held, ""
        return out, []

    def finish(self, reason: str) -> tuple[str, list[dict], str]:
        """(content still to hand out, tool-call delta entries still to hand out, the
        finish reason)."""
        if self.is_plain:
            return "", [], reason
        calls = tool_calls.read_calls(self.text)
        streamed = self.call is not None and self.call.call_id is not None
        if calls is None:
            if streamed:  # cut off mid-arguments (max_tokens): what was sent stays sent
                return "", [], reason
            out, self.held = self.held, ""
            return out, [], reason
        if not streamed:
            return "", [c.to_dict(i) for i, c in enumerate(calls)], "tool_calls"
        rest = [c.to_dict(i) for i, c in enumerate(calls) if i > 0]
        if not self.call.arguments:  # arguments that are not an object: sent whole now
            rest.insert(0, {"index": 0, "function": {"arguments": calls[0].arguments}})
        return "", rest, "tool_calls"


def _prompt_index(job: Job, index: int) -> int:
    return index // job.n


async def chat_stream(
    job: Job, pump, model_id: str, piecewise: bool = True
) -> AsyncIterator[list[dict]]:
    """The chunks of a chat answer, a list for each decoder turn's pieces (sent together)."""
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    states: dict[int, ChoiceState] = {}
    usage = Usage()

    def chunk(index: int, delta: dict, finish=None, logprobs=None, **extra) -> dict:
        return {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_id,
            "choices": [
                {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            ],
            **extra,
        }

    want_logprobs = job.sampling.top_logprobs is not None
    async for turn in pump(job):
        out = []
        for index, item in turn:
            state = states.get(index)
            if state is None:
                state = states[index] = ChoiceState(job.tools, piecewise)
                out.append(chunk(index, {"role": "assistant", "content": ""}))
            if isinstance(item, Piece):
                text, call_deltas = state.feed(item)
                if text or (item.logprobs and state.is_plain):
                    lp = chat_logprobs(item.logprobs) if want_logprobs else None
                    out.append(chunk(index, {"content": text}, logprobs=lp))
                if call_deltas:
                    out.append(chunk(index, {"tool_calls": call_deltas}))
                continue
            usage.add(_prompt_index(job, index), item)
            rest, calls, reason = state.finish(item.finish_reason)
            if rest:
                out.append(chunk(index, {"content": rest}))
            if calls:
                out.append(chunk(index, {"tool_calls": calls}))
            out.append(chunk(index, {}, finish=reason, **_finish_extra(job, item)))
        yield out
    if job.include_usage:
        yield [
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model_id,
                "choices": [],
                "usage": usage.to_dict(),
            }
        ]


def _finish_extra(job: Job, ending: Ending) -> dict:
    """What a choice's last chunk carries beyond OpenAI's fields: llama.cpp's timings, and
    (for a single answer, where it is the whole request's) the usage, which LayerLab's own
    client reads there."""
    extra: dict = {"timings": ending.timings.to_dict(), "layerlab_usage": usage_one(ending)}
    if job.n == 1 and len(job.prompts) == 1:
        extra["usage"] = usage_one(ending)
    if ending.stopped_by_client:
        extra["stopped_by_client"] = True
    return extra


def usage_one(ending: Ending) -> dict:
    return {
        "prompt_tokens": ending.prompt_tokens,
        "completion_tokens": ending.completion_tokens,
        "total_tokens": ending.prompt_tokens + ending.completion_tokens,
    }


async def text_stream(job: Job, pump, model_id: str) -> AsyncIterator[list[dict]]:
    """The chunks of a completion, a list for each decoder turn's pieces (sent together)."""
    cid = f"cmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    started: set[int] = set()
    offsets: dict[int, int] = {}
    usage = Usage()

    def chunk(index: int, text: str, finish=None, logprobs=None, **extra) -> dict:
        return {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": model_id,
            "choices": [
                {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}
            ],
            **extra,
        }

    async for turn in pump(job):
        out = []
        for index, item in turn:
            if index not in started:
                started.add(index)
                offsets[index] = 0
                if job.echo:
                    echo = job.echo[_prompt_index(job, index)]
                    offsets[index] = len(echo)
                    out.append(chunk(index, echo))
            if isinstance(item, Piece):
                lp = None
                if job.sampling.top_logprobs is not None:
                    lp = text_logprobs(item.logprobs, offsets[index])
                offsets[index] += len(item.text)
                if item.text or lp:
                    out.append(chunk(index, item.text, logprobs=lp))
                continue
            usage.add(_prompt_index(job, index), item)
            out.append(chunk(index, "", finish=item.finish_reason, **_finish_extra(job, item)))
        yield out
    if job.include_usage:
        yield [
            {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": model_id,
                "choices": [],
                "usage": usage.to_dict(),
            }
        ]


async def _each(turns: AsyncIterator[list[dict]]) -> AsyncIterator[dict]:
    async for turn in turns:
        for chunk in turn:
            yield chunk


async def collect_chat(job: Job, pump, model_id: str) -> dict:
    choices: dict[int, dict] = {}
    usage = Usage()
    timings = None
    async for c in _each(chat_stream(job, pump, model_id, piecewise=False)):
        if not c["choices"]:
            continue
        ch = c["choices"][0]
        entry = choices.setdefault(
            ch["index"],
            {"index": ch["index"], "message": {"role": "assistant", "content": ""}, "lp": []},
        )
        delta = ch["delta"]
        entry["message"]["content"] += delta.get("content") or ""
        if delta.get("tool_calls"):
            entry["message"]["tool_calls"] = [
                {k: v for k, v in t.items() if k != "index"} for t in delta["tool_calls"]
            ]
        if ch.get("logprobs"):
            entry["lp"].extend(ch["logprobs"]["content"])
        if ch["finish_reason"]:
            entry["finish_reason"] = ch["finish_reason"]
            timings = c.get("timings")
            u = c["layerlab_usage"]
            usage.prompt += u["prompt_tokens"] if ch["index"] % job.n == 0 else 0
            usage.completion += u["completion_tokens"]
    out = []
    for i in sorted(choices):
        e = choices[i]
        lp = e.pop("lp")
        if e["message"].get("tool_calls") and not e["message"]["content"]:
            e["message"]["content"] = None
        e["logprobs"] = {"content": lp} if job.sampling.top_logprobs is not None else None
        e.setdefault("finish_reason", "stop")
        out.append(e)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_id,
        "choices": out,
        "usage": usage.to_dict(),
        "timings": timings,
    }


def register(app: FastAPI, session: ModelSession, pump, model_id: str, started: float) -> None:
    """Add the OpenAI and llama.cpp-server routes to the engine's app."""
    line = app.state.line
    lane_of = app.state.lane_of

    def wrong_model(name: str | None):
        if name and name != model_id:
            return refuse(
                404,
                f"The model '{name}' is not loaded here; this server answers with '{model_id}'.",
                "invalid_request_error",
                "model",
                "model_not_found",
            )
        return None

    async def answer(request: Request, req, prepare, shape_stream, collect):
        if (r := wrong_model(req.model)) is not None:
            return r
        try:
            job = await asyncio.to_thread(prepare, session, req)
        except RequestRefused as e:
            return refuse(400, e.message, "invalid_request_error", e.param, e.code)
        job.lane = lane_of(request)
        job.start = run_job(session, job)
        place = line.admit(job.lane)
        if place is None:
            return refuse(
                429, "The model is busy answering other requests; try again shortly.", "busy"
            )
        if job.stream:
            return app.state.stream_in_line(place, _sse(shape_stream(job, pump, model_id)))

        async def reply():
            try:
                return JSONResponse(await collect(job, pump, model_id))
            except Exception as e:
                return refuse(500, f"The engine failed while answering: {e}", "engine_error")

        return app.state.whole_in_line(place, reply)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        req = await read_request(request, ChatRequest)
        if not isinstance(req, ChatRequest):
            return req
        return await answer(request, req, prepare_chat, chat_stream, collect_chat)

    @app.post("/v1/completions")
    async def completion(request: Request):
        req = await read_request(request, CompletionRequest)
        if not isinstance(req, CompletionRequest):
            return req
        return await answer(request, req, prepare_completion, text_stream, collect_text)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        req = await read_request(request, EmbeddingRequest)
        if not isinstance(req, EmbeddingRequest):
            return req
        if (r := wrong_model(req.model)) is not None:
            return r
        return refuse(
            400,
            f"'{model_id}' is loaded to write answers, not to make embeddings, so there are "
            "none to give. LayerLab does not load models for embeddings yet: send embedding "
            "requests to a server loaded for them (for example llama.cpp's llama-server "
            "started with --embeddings and an embedding model).",
            "invalid_request_error",
            "model",
            "embeddings_not_loaded",
        )

    @app.get("/v1/models")
    async def models() -> dict:
        n_ctx = session.n_ctx()
        return {
            "object": "list",
            "data": [
                {
                    "id": model_id,
                    "object": "model",
                    "created": int(started),
                    "owned_by": "layerlab",
                    "context_length": n_ctx,
                    "max_model_len": n_ctx,
                }
            ],
        }

    @app.get("/props")
    async def props() -> dict:
        n_ctx = session.n_ctx()
        return {
            "default_generation_settings": {"n_ctx": n_ctx, "model": model_id},
            "n_ctx": n_ctx,
            "total_slots": session.plan.parallel,
            "model_alias": model_id,
            "model_path": session.plan.model_path,
            "chat_template": session.chat_template(),
        }

    @app.post("/tokenize")
    async def tokenize(request: Request):
        req = await read_request(request, TokenizeRequest)
        if not isinstance(req, TokenizeRequest):
            return req
        tokens = session.prompt_tokens(req.content, add_bos=req.add_special)
        if not req.with_pieces:
            return {"tokens": tokens}
        pieces = session.token_pieces(tokens)
        return {"tokens": [{"id": t, "piece": p} for t, p in zip(tokens, pieces, strict=True)]}

    @app.post("/detokenize")
    async def detokenize(request: Request):
        req = await read_request(request, DetokenizeRequest)
        if not isinstance(req, DetokenizeRequest):
            return req
        try:
            return {"content": session.detokenize(req.tokens)}
        except Exception:
            return refuse(
                400,
                "The tokens are not all in this model's vocabulary.",
                "invalid_request_error",
                "tokens",
            )


async def collect_text(job: Job, pump, model_id: str) -> dict:
    choices: dict[int, dict] = {}
    timings = None
    usage = Usage()
    async for c in _each(text_stream(job, pump, model_id)):
        if not c["choices"]:
            continue
        ch = c["choices"][0]
        e = choices.setdefault(ch["index"], {"index": ch["index"], "text": "", "lp": []})
        e["text"] += ch["text"]
        if ch.get("logprobs"):
            e["lp"].append(ch["logprobs"])
        if ch["finish_reason"]:
            e["finish_reason"] = ch["finish_reason"]
            timings = c.get("timings")
            u = c["layerlab_usage"]
            usage.prompt += u["prompt_tokens"] if ch["index"] % job.n == 0 else 0
            usage.completion += u["completion_tokens"]
    out = []
    for i in sorted(choices):
        e = choices[i]
        parts = e.pop("lp")
        e["logprobs"] = (
            {
                k: [x for p in parts for x in p[k]]
                for k in ("tokens", "token_logprobs", "top_logprobs", "text_offset")
            }
            if job.sampling.top_logprobs is not None
            else None
        )
        e.setdefault("finish_reason", "stop")
        out.append(e)
    return {
        "id": f"cmpl-{uuid.uuid4().hex[:24]}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model_id,
        "choices": out,
        "usage": usage.to_dict(),
        "timings": timings,
    }


async def _sse(turns: AsyncIterator[list[dict]]) -> AsyncIterator[bytes]:
    """Each chunk as one server-sent event, a decoder turn's together (one write to the
    socket, one wake-up of the reader); an engine error as a last chunk that says so."""
    try:
        async for turn in turns:
            if turn:
                yield b"".join(b"data: " + _json(chunk) + b"\n\n" for chunk in turn)
    except Exception as e:
        yield b"data: " + _json({"error": {"message": str(e), "type": "engine_error"}}) + b"\n\n"
    yield b"data: [DONE]\n\n"


def _json(value: object) -> bytes:
    # compact, and UTF-8 as it is (OpenAI's own streams send characters, not \u escapes)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
