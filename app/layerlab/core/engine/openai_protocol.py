"""The OpenAI API as LayerLab speaks it: one pydantic model per request, each field described.

Unknown fields are never silently dropped when they would change the answer. Each name a
client may send falls in one of these groups, on purpose:
- fields we honour (the models below), and other servers' names for them (ALIASES);
- fields that by nature do not change the text (NO_EFFECT): accepted;
- other samplers we do not have, accepted only at the value that switches them off (NEUTRAL);
- anything else: a 400 that names the field.
The lists come from what Open WebUI, Continue and SillyTavern really send (tests/api/fixtures).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Other servers' names for parameters we honour (SillyTavern sends several at once, equal).
ALIASES = {
    "max_new_tokens": "max_tokens",
    "n_predict": "max_tokens",
    "num_predict": "max_tokens",
    "repetition_penalty": "repeat_penalty",
    "rep_pen": "repeat_penalty",
    "typical": "typical_p",
    "sampler_seed": "seed",
    "mirostat": "mirostat_mode",
    "stopping_strings": "stop",
    "rep_pen_range": "repeat_last_n",
    "repetition_penalty_range": "repeat_last_n",
    "n_probs": "top_logprobs",
}

# Fields that cannot change the answer's text: who asked, bookkeeping, transport, other
# servers' settings for their own process.
NO_EFFECT = frozenset(
    {
        "user",
        "metadata",
        "store",
        "service_tier",
        "parallel_tool_calls",
        "cache_prompt",
        "api_type",
        "api_server",
        "legacy_api",
        "truncation_length",
        "num_ctx",
        "skip_special_tokens",
        "spaces_between_special_tokens",
        "max_tokens_second",
        "samplers",
        "sampler_order",
        "sampler_priority",
        "include_stop_str_in_output",
        "early_stopping",
        "add_bos_token",
        "negative_prompt",  # only read with guidance_scale != 1, which NEUTRAL refuses
        "dry_allowed_length",  # these three only matter with dry_multiplier != 0
        "dry_base",
        "dry_sequence_breakers",
        "dry_penalty_last_n",
        "xtc_threshold",  # only with xtc_probability != 0
        "smoothing_curve",  # only with smoothing_factor != 0
        "dynatemp_exponent",
        "rep_pen_slope",
    }
)

# Samplers LayerLab does not have, accepted only at the value that turns them off.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "top_a": (0,),
    "skew": (0,),
    "min_length": (0,),
    "min_tokens": (0,),
    "smoothing_factor": (0,),
    "dry_multiplier": (0,),
    "dynamic_temperature": (False,),
    "xtc_probability": (0,),
    "epsilon_cutoff": (0,),
    "eta_cutoff": (0,),
    "guidance_scale": (1,),
    "tfs": (1,),
    "tfs_z": (1,),
    "grammar_string": ("",),
    "banned_strings": ([],),
    "custom_token_bans": ("", []),
    "ban_eos_token": (False,),
    "ignore_eos": (False,),
    "num_beams": (1,),
    "length_penalty": (1,),
    "encoder_repetition_penalty": (1,),
    "no_repeat_ngram_size": (0,),
    "penalty_alpha": (0,),
    "do_sample": (True,),
    "repetition_decay": (0,),
    "temperature_last": (True, False),
    "speculative_ngram": (False,),
    "best_of": (None, 1),
    "prediction": (None,),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "reasoning_effort": (None,),
}


class RequestRefused(ValueError):
    """A request LayerLab will not answer as asked: `param` names the field."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def sort_fields(body: dict, known: set[str]) -> dict:
    """The body with aliases renamed and tolerated fields taken out; RequestRefused for a
    field that would change the answer and that LayerLab cannot honour."""
    out: dict = {}
    for name, value in body.items():
        if name in known:
            out[name] = value
        elif name in ALIASES:
            target = ALIASES[name]
            if target in known and target not in body:
                out.setdefault(target, value)
        elif name in NO_EFFECT:
            continue
        elif name in NEUTRAL:
            if value not in NEUTRAL[name]:
                off = NEUTRAL[name][0]
                raise RequestRefused(
                    f"LayerLab does not support '{name}'; leave it out or set it to "
                    f"{json.dumps(off)}.",
                    name,
                    "unsupported_parameter",
                )
        else:
            raise RequestRefused(
                f"LayerLab does not know the parameter '{name}', so it would be ignored; "
                "leave it out.",
                name,
                "unknown_parameter",
            )
    return out


# -- messages ---------------------------------------------------------------------------


class FunctionCall(BaseModel):
    name: str = Field(description="The function the model called.")
    arguments: str = Field(description="Its arguments, a JSON object as text.")


class ToolCall(BaseModel):
    id: str = Field(description="The call's id, quoted back by the tool's answer.")
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One message. Extra fields reach the model's chat template as they are."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict] | None = Field(
        default="", description="Text, or a list of parts: only text parts are read."
    )
    name: str | None = Field(default=None, description="Who spoke, when several share a role.")
    tool_calls: list[ToolCall] | None = Field(
        default=None, description="The calls an earlier assistant turn made."
    )
    tool_call_id: str | None = Field(default=None, description="The call a tool message answers.")

    @field_validator("content")
    @classmethod
    def _text_parts_only(cls, value):
        if not isinstance(value, list):
            return value
        texts = []
        for i, part in enumerate(value):
            kind = part.get("type")
            if kind != "text":
                raise ValueError(
                    f"part {i} is of type '{kind}': this model reads text only, so only "
                    "'text' parts can be sent"
                )
            if not isinstance(part.get("text"), str):
                raise ValueError(f"part {i} has no 'text'")
            texts.append(part["text"])
        return "\n".join(texts)  # text parts in order, as one text


# -- tools and structured answers ----------------------------------------------------------


class FunctionDefinition(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="The function's name.")
    description: str | None = Field(default=None, description="What it does, for the model.")
    parameters: dict = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="A JSON schema for its arguments; the answer is held to it by a grammar.",
    )
    strict: bool | None = Field(default=None, description="Always strict here: a grammar.")


class Tool(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedToolChoice(BaseModel):
    type: Literal["function"] = "function"
    function: dict = Field(description='{"name": ...}: the one function to call.')

    @field_validator("function")
    @classmethod
    def _has_name(cls, value: dict) -> dict:
        if not isinstance(value.get("name"), str):
            raise ValueError("needs a 'name'")
        return value


class JsonSchemaFormat(BaseModel):
    name: str = Field(default="answer", description="The schema's name (not read).")
    schema_: dict = Field(alias="schema", description="The JSON schema the answer must meet.")
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"] = Field(
        description="text: free; json_object: any JSON object; json_schema: the given schema."
    )
    json_schema: JsonSchemaFormat | None = None
    schema_: dict | None = Field(
        default=None, alias="schema", description="llama.cpp's spelling for json_object."
    )

    @model_validator(mode="after")
    def _schema_given(self):
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a 'json_schema' with a 'schema'")
        return self


class StreamOptions(BaseModel):
    include_usage: bool = Field(
        default=False, description="End the stream with a chunk holding only the usage."
    )


# -- requests ---------------------------------------------------------------------------


class Sampling(BaseModel):
    """What both kinds of completion sample with."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    model: str | None = Field(default=None, description="Must name the loaded model.")
    stream: bool = Field(default=False, description="Answer as server-sent events.")
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, description="Most tokens to generate.")
    max_completion_tokens: int | None = Field(default=None, ge=1, description="Newer name.")
    n: int = Field(default=1, ge=1, le=16, description="Answers to make, one after another.")
    temperature: float = Field(default=0.7, ge=0, le=2)
    top_p: float = Field(default=0.95, gt=0, le=1)
    top_k: int = Field(default=40, ge=0)
    min_p: float = Field(default=0.05, ge=0, le=1)
    typical_p: float = Field(default=1.0, gt=0, le=1)
    repeat_penalty: float = Field(default=1.0, gt=0)
    repeat_last_n: int = Field(default=64, ge=-1, description="Tokens the penalties look at.")
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    mirostat_mode: int = Field(default=0, ge=0, le=2)
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    seed: int | None = Field(default=None, description="Same seed, same answer.")
    stop: str | list[str] | None = Field(default=None, description="Up to 16 stop strings.")
    logit_bias: dict[str, float] | None = Field(default=None, description="token id -> bias")
    grammar: str | None = Field(default=None, description="A GBNF grammar (llama.cpp).")
    json_schema: dict | None = Field(default=None, description="llama.cpp: answer this schema.")

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > 16:
            raise ValueError("at most 16 stop strings")
        return [s for s in stops if s]

    @field_validator("logit_bias")
    @classmethod
    def _bias_keys(cls, value):
        for key in value or {}:
            if not key.lstrip("-").isdigit():
                raise ValueError(f"'{key}' is not a token id")
        return value

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[Tool] | None = Field(default=None, description="Functions the model may call.")
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    functions: list[FunctionDefinition] | None = Field(default=None, description="Legacy tools.")
    function_call: Literal["none", "auto"] | dict | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool = Field(default=False, description="Return each token's log probability.")
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    @model_validator(mode="after")
    def _legacy_functions(self):
        if self.functions and not self.tools:
            self.tools = [Tool(function=f) for f in self.functions]
        if self.function_call is not None and self.tool_choice is None:
            fc = self.function_call
            self.tool_choice = (
                NamedToolChoice(function={"name": fc["name"]}) if isinstance(fc, dict) else fc
            )
        if isinstance(self.tool_choice, NamedToolChoice):
            names = [t.function.name for t in self.tools or []]
            if self.tool_choice.function["name"] not in names:
                raise ValueError(
                    f"tool_choice names '{self.tool_choice.function['name']}', which is not "
                    "in tools"
                )
        if self.tool_choice == "required" and not self.tools:
            raise ValueError("tool_choice 'required' needs tools")
        if self.top_logprobs is not None and not self.logprobs:
            self.logprobs = True
        return self


class CompletionRequest(Sampling):
    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        description="Text or tokens, or a list of them: each gets n answers."
    )
    echo: bool = Field(default=False, description="Put the prompt before each answer.")
    suffix: str | None = Field(default=None, description="Text after the insertion (refused).")
    logprobs: int | None = Field(default=None, ge=0, le=5, description="Top alternatives.")
    top_logprobs: int | None = Field(default=None, ge=0, le=20, description="llama.cpp: n_probs")

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value):
        if value:
            raise ValueError(
                "filling in the middle is not supported: send the text before as 'prompt' "
                "and leave 'suffix' out"
            )
        return value

    def prompts(self) -> list[str | list[int]]:
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and all(isinstance(t, int) for t in p):
            return [p]  # type: ignore[list-item]
        return list(p)  # type: ignore[arg-type]

    def alternatives(self) -> int | None:
        """How many alternatives per token were asked for (None: no logprobs)."""
        return self.logprobs if self.logprobs is not None else self.top_logprobs


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None


class TokenizeRequest(BaseModel):
    """llama.cpp server's /tokenize."""

    model_config = ConfigDict(extra="ignore")
    content: str = Field(description="The text to tokenize.")
    add_special: bool = Field(default=False, description="Add BOS as the model wants.")
    with_pieces: bool = Field(default=False, description="Give each token's text too.")


class DetokenizeRequest(BaseModel):
    """llama.cpp server's /detokenize."""

    model_config = ConfigDict(extra="ignore")
    tokens: list[int]
