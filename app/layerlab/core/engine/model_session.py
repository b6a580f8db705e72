"""One loaded model inside the engine process: load it as a LoadPlan says, stream answers.

This is the only module (with ggml_lib) that imports llama_cpp, and it only ever runs in
the engine process: llama.cpp aborts on fatal errors, and a model's memory is surely
freed only when its process ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from layerlab.core import ggml_lib
from layerlab.core.engine.events import Placement
from layerlab.core.engine.llama_log import LlamaLog, allocations_by_device
from layerlab.core.gguf import ggml_type
from layerlab.core.load_plan import KVType, LoadPlan

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
        # Watchdog inputs, read by the API's status route from another thread.
        self.generating = False
        self.last_progress = time.monotonic()

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

        def params_for_this_plan():
            # Llama() does not expose these fields; set them on the params it builds.
            p = original()
            p.devices = ctypes.cast(devices, ctypes.c_void_p)
            p.use_extra_bufts = plan.use_extra_bufts
            p.progress_callback = progress
            return p

        low.llama_model_default_params = params_for_this_plan
        try:
            self.llm = llama_cpp.Llama(
                model_path=plan.model_path,
                n_ctx=plan.n_ctx,
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
        # LlamaModel has no n_layer(); the C API does. Units: n_layer blocks + the output.
        n_layer = low.llama_model_n_layer(self.llm.model)
        by_index = self.log.layer_devices()
        layer_devices = [
            self._device_names.get(by_index.get(i, "CPU"), by_index.get(i, "CPU"))
            for i in range(n_layer + 1)
        ]
        self.placement = Placement(
            layer_devices, allocations_by_device(self.log, self._device_names)
        )
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
            "n_ctx": low.llama_n_ctx(ctx),
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

    def render(self, messages: list[dict]) -> str:
        """The prompt the model's own template makes of `messages`, ready for its answer."""
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
        return formatter(messages=messages).prompt

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as the model reads a prompt (special tokens parsed, BOS added as
        the model wants)."""
        assert self.llm is not None
        return len(self.llm.tokenize(text.encode("utf-8", "replace"), special=True))

    # -- answering ----------------------------------------------------------------------
    def stream_chat(
        self, messages: list[dict], stop_event: threading.Event, **sampling
    ) -> Iterator[dict]:
        """Yield OpenAI chat.completion.chunk dicts; the last carries 'timings' and 'usage'."""
        assert self.llm is not None
        return self._stream(
            lambda: self.llm.create_chat_completion(messages=messages, stream=True, **sampling),
            stop_event,
        )

    def stream_completion(
        self, prompt: str, stop_event: threading.Event, **sampling
    ) -> Iterator[dict]:
        """Plain completion of `prompt` (no chat template): text_completion chunks, the last
        with 'timings' and 'usage'. The chat uses it to continue a cut-off answer and for a
        model without a chat template."""
        assert self.llm is not None
        return self._stream(
            lambda: self.llm.create_completion(prompt=prompt, stream=True, **sampling),
            stop_event,
        )

    def _stream(self, make: Callable[[], Iterator[dict]], stop_event: threading.Event):
        import llama_cpp.llama_cpp as low

        assert self.llm is not None
        low.llama_perf_context_reset(self.llm.ctx)
        self.generating = True
        self.last_progress = time.monotonic()
        last: dict | None = None
        n_chunks = 0
        try:
            stream = make()
            with contextlib.closing(stream):
                for chunk in stream:
                    self.last_progress = time.monotonic()
                    if stop_event.is_set():
                        break
                    chunk["model"] = self.model_id  # not the file path: it names the user's home
                    if last is not None:
                        yield last
                    last = chunk
                    n_chunks += 1
        finally:
            self.generating = False
            self.last_progress = time.monotonic()
        perf = low.llama_perf_context(self.llm.ctx)
        timings = Timings(perf.n_p_eval, perf.t_p_eval_ms, perf.n_eval, perf.t_eval_ms)
        if last is None:
            last = {
                "id": "chatcmpl-stopped",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": self.model_id,
                "choices": [{"index": 0, "delta": {}, "finish_reason": None}],
            }
        if stop_event.is_set():
            last["choices"][0]["finish_reason"] = "stop"
            last["stopped_by_client"] = True
        last["timings"] = timings.to_dict()
        # The first token comes out of the prompt's decode and the last one sampled is never
        # decoded, so a completion of N tokens takes N - 1 generation decodes (n_eval).
        generated = timings.predicted_n + 1 if n_chunks > 1 else 0
        last["usage"] = {
            "prompt_tokens": timings.prompt_n,
            "completion_tokens": generated,
            "total_tokens": timings.prompt_n + generated,
        }
        yield last
