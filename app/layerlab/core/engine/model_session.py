"""One loaded model inside the engine process: load it as a LoadPlan says, stream answers.

This is the only module (with ggml_lib) that imports llama_cpp, and it only ever runs in
the engine process: llama.cpp aborts on fatal errors, and a model's memory is surely
freed only when its process ends.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from layerlab.core import ggml_lib
from layerlab.core.engine.events import Placement
from layerlab.core.engine.llama_log import LlamaLog, allocations_by_device
from layerlab.core.gguf import ggml_type
from layerlab.core.load_plan import KVType, LoadPlan

if TYPE_CHECKING:
    from layerlab.core.engine.batch_decoder import BatchDecoder, Lane, Outlet

# ggml_type numbers for the KV cache types a LoadPlan may name (ggml's one table, via gguf)
KV_TYPES = {t: ggml_type(t) for t in get_args(KVType)}
SPLIT_MODES = {"none": 0, "layer": 1, "row": 2}
_SPLIT_NAMES = {v: k for k, v in SPLIT_MODES.items()}


@dataclass
class Timings:
    """What llama.cpp measured for one completion (llama_perf_context)."""

    prompt_n: int
    prompt_ms: float
    predicted_n: int
    predicted_ms: float

    def to_dict(self) -> dict:
        return {
            "prompt_n": self.prompt_n,
            "prompt_ms": round(self.prompt_ms, 3),
            "prompt_per_second": self.prompt_n / self.prompt_ms * 1000 if self.prompt_ms else None,
            "predicted_n": self.predicted_n,
            "predicted_ms": round(self.predicted_ms, 3),
            "predicted_per_second": (
                self.predicted_n / self.predicted_ms * 1000 if self.predicted_ms else None
            ),
        }


class ContextTooLong(ValueError):
    """The prompt alone fills the model's context: the client's to shorten."""

    def __init__(self, n_ctx: int, n_prompt: int):
        super().__init__(
            f"This model's context holds {n_ctx} tokens, and the request's prompt is "
            f"{n_prompt} tokens: shorten it (or load the model with a larger context)."
        )
        self.n_ctx = n_ctx
        self.n_prompt = n_prompt


@dataclass
class Sampling:
    """How one answer is sampled (the API's request, in llama.cpp's terms)."""

    max_tokens: int | None = None
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    mirostat_mode: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    grammar: str | None = None  # GBNF the answer must match
    top_logprobs: int | None = None  # None: no log probabilities; else that many alternatives
    logit_bias: dict[int, float] | None = None


@dataclass(frozen=True)
class TokenChoice:
    token: str
    logprob: float
    bytes: list[int]


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int]
    top: list[TokenChoice]


@dataclass(frozen=True)
class Piece:
    """Text of the answer as it comes, with the log probabilities of the tokens it ends."""

    text: str
    logprobs: list[TokenLogprob]


@dataclass(frozen=True)
class Ending:
    finish_reason: str
    prompt_tokens: int  # the whole prompt, cached or not
    completion_tokens: int  # tokens in the answer (an end-of-generation token is not)
    timings: Timings
    stopped_by_client: bool = False


class ModelSession:
    def __init__(self, plan: LoadPlan, log: LlamaLog):
        plan.validate()
        self.plan = plan
        self.log = log
        self.llm = None
        self.placement: Placement | None = None
        self.model_id = plan.model_name or Path(plan.model_path).name
        self._device_names: dict[str, str] = {"CPU": "CPU"}  # llama.cpp name -> label
        self._loaded: dict | None = None
        self._labels: list[str] = []  # the devices handed to llama.cpp, in order
        self._keep: list = []  # ctypes objects llama.cpp points into; must outlive the model
        self.decoder: BatchDecoder | None = None  # runs every answer once loaded
        self.output_on_worker = False
        # Watchdog inputs, read by the API's status route from another thread.
        self.generating = False
        self.last_progress = time.monotonic()
        # The first decode on a device builds its kernels (Vulkan pipelines, CUDA modules):
        # seconds on a GPU, ~30 s on Mesa's CPU Vulkan. The watchdog gives it longer.
        self.warm = False

    # -- loading ------------------------------------------------------------------------
    def _device_array(self) -> ctypes.Array:
        handles: list[int] = []
        rpc_cache: dict[str, list[int]] = {}
        for ref in self.plan.devices:
            if ref.kind == "rpc":
                if ref.endpoint not in rpc_cache:
                    rpc_cache[ref.endpoint] = ggml_lib.rpc_devices(ref.endpoint)
                devs = rpc_cache[ref.endpoint]
                if ref.index >= len(devs):
                    raise ValueError(
                        f"worker {ref.endpoint} has {len(devs)} devices, "
                        f"the plan asks for #{ref.index}"
                    )
                h = devs[ref.index]
            else:
                h = ggml_lib.device_by_name(ref.name)
            self._device_names[ggml_lib.describe(h).name] = ref.label
            if ref.kind == "rpc":
                self._device_names[f"RPC{ref.index}[{ref.endpoint}]"] = ref.label
            handles.append(h)
            self._labels.append(ref.label)
        # NULL-terminated; an empty list means "CPU only", not "every device".
        arr = (ctypes.c_void_p * (len(handles) + 1))(*handles, None)
        self._keep.append(arr)
        return arr

    def load(self, on_progress: Callable[[float], None]) -> Placement:
        import llama_cpp
        import llama_cpp.llama_cpp as low

        plan = self.plan
        devices = self._device_array()

        @low.llama_progress_callback
        def progress(fraction: float, _user: ctypes.c_void_p) -> bool:
            on_progress(float(fraction))
            return True

        self._keep.append(progress)
        original = low.llama_model_default_params
        original_ctx = low.llama_context_default_params
        parallel = plan.parallel
        n_ctx = plan.n_ctx
        if n_ctx == 0 and parallel > 1:  # "the trained length" is each slot's, not shared
            from layerlab.core.gguf.facts import read_facts

            n_ctx = read_facts(plan.model_path).n_ctx_train

        def context_for_this_plan():
            # One sequence per slot, each in its own KV stream of n_ctx cells
            # (batch_decoder.py says why not a unified cache).
            p = original_ctx()
            p.n_seq_max = parallel
            p.kv_unified = False
            return p

        def params_for_this_plan():
            # Llama() does not expose these fields; set them on the params it builds.
            p = original()
            p.devices = ctypes.cast(devices, ctypes.c_void_p)
            p.use_extra_bufts = plan.use_extra_bufts
            p.progress_callback = progress
            return p

        low.llama_model_default_params = params_for_this_plan
        low.llama_context_default_params = context_for_this_plan
        try:
            self.llm = llama_cpp.Llama(
                model_path=plan.model_path,
                # llama.cpp's n_ctx is the whole cache: each of the slots gets its share
                n_ctx=n_ctx * parallel,
                n_gpu_layers=plan.n_gpu_layers,
                split_mode=SPLIT_MODES[plan.split_mode],
                main_gpu=plan.main_gpu,
                tensor_split=plan.tensor_split or None,
                n_threads=plan.n_threads,
                n_threads_batch=plan.n_threads,
                n_batch=plan.n_batch,
                n_ubatch=plan.n_ubatch,
                type_k=KV_TYPES[plan.type_k],
                type_v=KV_TYPES[plan.type_v],
                flash_attn=plan.flash_attn,
                use_mmap=plan.use_mmap,
                seed=plan.seed,
                verbose=True,  # keeps Llama from redirecting fds 1/2, which carry our events
            )
        finally:
            low.llama_model_default_params = original
            low.llama_context_default_params = original_ctx
        # LlamaModel has no n_layer(); the C API does. Units: n_layer blocks + the output.
        n_layer = low.llama_model_n_layer(self.llm.model)
        by_index = self.log.layer_devices()
        # the output layer (unit n_layer) on a worker: each token's logits cross the network
        self.output_on_worker = by_index.get(n_layer, "CPU").startswith("RPC")
        layer_devices = [
            self._device_names.get(by_index.get(i, "CPU"), by_index.get(i, "CPU"))
            for i in range(n_layer + 1)
        ]
        self.placement = Placement(
            layer_devices, allocations_by_device(self.log, self._device_names)
        )
        from layerlab.core.engine.batch_decoder import BatchDecoder

        self.decoder = BatchDecoder(self, low.llama_n_seq_max(self.llm.ctx))
        return self.placement

    def loaded(self) -> dict:
        """The parameters llama.cpp actually runs with, named as LoadPlan names them.

        Context sizes and threads come from the context itself; flash attention and the KV
        types from what llama.cpp built (its log); the model's settings are the ones it was
        handed, which it does not change without failing the load.
        """
        if self._loaded is not None:  # read once: the status route asks twice a second
            return self._loaded
        import llama_cpp.llama_cpp as low

        assert self.llm is not None
        ctx, mp = self.llm.ctx, self.llm.model_params
        facts = self.log.context_facts()
        out = {
            "n_ctx": low.llama_n_ctx_seq(ctx),  # each slot's
            "parallel": low.llama_n_seq_max(ctx),
            "n_batch": low.llama_n_batch(ctx),
            "n_ubatch": low.llama_n_ubatch(ctx),
            "n_threads": low.llama_n_threads(ctx),
            "n_threads_batch": low.llama_n_threads_batch(ctx),
            "flash_attn": facts.get("flash_attn"),
            "type_k": facts.get("type_k"),
            "type_v": facts.get("type_v"),
            "split_mode": _SPLIT_NAMES.get(mp.split_mode, str(mp.split_mode)),
            # Llama() hands "every layer" (-1) over as INT32_MAX
            "n_gpu_layers": -1 if mp.n_gpu_layers == 0x7FFFFFFF else mp.n_gpu_layers,
            "main_gpu": mp.main_gpu,
            "devices": list(self._labels),
        }
        self._loaded = {k: v for k, v in out.items() if v is not None}
        return self._loaded

    # -- counting (the chat's context meter) ---------------------------------------------
    def chat_template(self) -> str:
        """The GGUF's own chat template ('' for a model that has none: a base model)."""
        assert self.llm is not None
        return self.llm.metadata.get("tokenizer.chat_template", "")

    def render(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        """The prompt the model's own template makes of `messages` (and `tools`, for a
        template that renders them), ready for its answer."""
        from llama_cpp import llama_chat_format

        assert self.llm is not None
        model = self.llm._model

        def text(token: int) -> str:
            return model.token_get_text(token) if token != -1 else ""

        formatter = llama_chat_format.Jinja2ChatFormatter(
            template=self.chat_template(),
            eos_token=text(self.llm.token_eos()),
            bos_token=text(self.llm.token_bos()),
        )
        return formatter(messages=messages, tools=tools).prompt

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as the model reads a prompt (special tokens parsed, BOS added as
        the model wants)."""
        assert self.llm is not None
        return len(self.llm.tokenize(text.encode("utf-8", "replace"), special=True))

    # -- answering ----------------------------------------------------------------------
    def n_ctx(self) -> int:
        """The context one answer has (each slot's own)."""
        import llama_cpp.llama_cpp as low

        assert self.llm is not None
        return low.llama_n_ctx_seq(self.llm.ctx)

    def prompt_tokens(self, text: str, add_bos: bool = True) -> list[int]:
        """`text` as the model reads a prompt: special tokens parsed, BOS added as the model
        wants unless `add_bos` is off (a chat template writes its own), and never twice."""
        assert self.llm is not None
        tokens = self.llm.tokenize(text.encode("utf-8", "replace"), add_bos=add_bos, special=True)
        bos = self.llm.token_bos()
        if len(tokens) >= 2 and tokens[0] == tokens[1] == bos:
            tokens = tokens[1:]
        return tokens

    def detokenize(self, tokens: list[int]) -> str:
        assert self.llm is not None
        return self.llm.detokenize(tokens).decode("utf-8", "replace")

    def token_pieces(self, tokens: list[int]) -> list[str]:
        assert self.llm is not None
        return [self.llm.detokenize([t]).decode("utf-8", "replace") for t in tokens]

    def submit(
        self,
        asks: list[tuple[list[int], Sampling]],
        stop_event: threading.Event,
        outlet: Outlet,
        lane: Lane = "api",
    ) -> None:
        """Answer each (prompt tokens, sampling) of one request: (its index in `asks`,
        Piece) into `outlet` as text comes, then (index, Ending) and (index, DONE) each (an
        exception in place of the Ending when it failed).

        The answers wait for free slots in their lane's queue, then are decoded together
        with the others (batch_decoder.py), as many at once as slots are free: our own loop
        over llama.cpp's sampler, not Llama.create_completion. It counts each answer's
        tokens exactly (usage), pairs each token with its log probability without
        logits_all (which would keep n_ctx x n_vocab floats), and takes a grammar. Setting
        `stop_event` ends them all at the next step. A prompt too long for a slot's context
        is refused here, before any answer starts.
        """
        assert self.decoder is not None
        n_ctx = self.n_ctx()
        for prompt, _ in asks:
            if len(prompt) >= n_ctx:
                raise ContextTooLong(n_ctx, len(prompt))
        self.decoder.submit([(list(p), s) for p, s in asks], stop_event, outlet, lane)

    def _logprob(self, token: int, lp, top: int | None) -> TokenLogprob:
        import numpy as np

        assert self.llm is not None
        piece = self.llm.detokenize([token])
        alternatives: list[TokenChoice] = []
        if top:
            ids = np.argpartition(-lp, top)[:top]
            for i in sorted(ids, key=lambda i: -lp[i]):
                b = self.llm.detokenize([int(i)])
                alternatives.append(
                    TokenChoice(b.decode("utf-8", "replace"), float(lp[i]), list(b))
                )
        return TokenLogprob(
            piece.decode("utf-8", "replace"), float(lp[token]), list(piece), alternatives
        )


def _safe_end(text: bytes, stops: list[bytes]) -> int:
    """How much of `text` can be handed out: not a partial UTF-8 character at the end, nor
    the beginning of a stop string that the next token may complete."""
    end = len(text)
    for back in range(1, min(4, end) + 1):
        byte = text[end - back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead
        need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte >= 0xF0 else 1
        if need > back:
            end -= back
        break
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, end), 0, -1):
            if text[:end].endswith(s[:k]):
                hold = max(hold, k)
                break
    return end - hold
