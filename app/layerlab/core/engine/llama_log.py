"""llama.cpp's log, captured in the engine process and read for facts it gives nowhere else:
which device got each layer, how many bytes each device's buffers took, what the context
really runs with (flash attention, KV types), and why a load failed."""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Callable

from layerlab.core.engine.events import DeviceAllocation

_LAYER = re.compile(r"load_tensors: layer\s+(\d+) assigned to device (\S+?),")
_MODEL_BUF = re.compile(r"load_tensors:\s+(\S+) model buffer size =\s+([\d.]+) MiB")
_KV_BUF = re.compile(r"llama_kv_cache:\s+(\S+) KV buffer size =\s+([\d.]+) MiB")
_COMPUTE_BUF = re.compile(r"\s(\S+) compute buffer size =\s+([\d.]+) MiB")
_KV_TYPES = re.compile(r"llama_kv_cache: size = .*K \((\w+)\):.*V \((\w+)\):")
_FA_SETTING = re.compile(r"llama_context: flash_attn\s+=\s+(\w+)")
_MIB = 1024 * 1024
LOG_ERROR, LOG_CONT = 4, 5  # ggml_log_level: an error line, and the rest of the previous line


class LlamaLog:
    """Collects llama.cpp log text (all levels, DEBUG included) and parses it on demand."""

    def __init__(self, echo: Callable[[str], None] | None = None):
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._recent: collections.deque[str] | None = None  # after settle(): the last lines
        self._partial = ""
        self._echo = echo
        self._errors: collections.deque[str] = collections.deque(maxlen=12)
        self._error_partial = ""
        self._level = 0

    def feed(self, text: str, level: int = 0) -> None:
        with self._lock:
            if level != LOG_CONT:
                self._level = level
            if self._level == LOG_ERROR:
                # Kept apart (bounded): a failed load's reason is in these, not in the exception.
                err = self._error_partial + text
                *done, self._error_partial = err.split("\n")
                self._errors.extend(x.strip() for x in done if x.strip())
            text = self._partial + text
            *complete, self._partial = text.split("\n")
            (self._lines if self._recent is None else self._recent).extend(complete)
        if self._echo:
            self._echo(text if not complete else "\n".join(complete) + "\n")

    def settle(self, keep: int = 2000) -> None:
        """The load's lines have been read (placement, buffers, what the context runs
        with): from here on only the last `keep` lines stay in memory. Each new graph
        reservation (a greedy chain attached or let go) logs ~150 DEBUG lines, and an engine
        that serves for weeks would keep them all; every line still goes to the echo."""
        with self._lock:
            self._recent = collections.deque(maxlen=keep)

    @property
    def lines(self) -> list[str]:
        with self._lock:
            return self._lines + list(self._recent or ())

    def tail(self, n: int = 20) -> list[str]:
        return self.lines[-n:]

    def errors(self) -> list[str]:
        """The last lines llama.cpp logged as errors, oldest first."""
        with self._lock:
            rest = [self._error_partial.strip()] if self._error_partial.strip() else []
            return list(self._errors) + rest

    def context_facts(self) -> dict:
        """What the context runs with that the C API does not say: flash attention (from the
        graph llama.cpp built, not the setting it was given) and the KV cache's types."""
        facts: dict = {}
        fa_nodes = softmax = False
        for line in self.lines:
            if "(FLASH_ATTN_EXT)" in line:
                fa_nodes = True
            elif "kq_soft_max" in line:
                softmax = True
            m = _KV_TYPES.search(line)
            if m:
                facts["type_k"], facts["type_v"] = m.group(1), m.group(2)
            m = _FA_SETTING.search(line)
            if m and "flash_attn" not in facts:
                facts["flash_attn"] = m.group(1) == "enabled"
        if fa_nodes or softmax:
            facts["flash_attn"] = fa_nodes
        return facts

    def layer_devices(self) -> dict[int, str]:
        """Layer index -> llama.cpp device name ("CPU", "RPC0", "CUDA1")."""
        out: dict[int, str] = {}
        for line in self.lines:
            m = _LAYER.search(line)
            if m:
                out[int(m.group(1))] = m.group(2)
        return out

    def allocations(self) -> dict[str, dict[str, int]]:
        """Buffer name -> {weights, kv_cache, compute} bytes, as llama.cpp logged them.

        Buffer names look like "CPU", "CPU_Mapped", "RPC0[127.0.0.1:50052]"; the caller maps
        them to devices. Sizes are logged in MiB with two decimals, so they are exact to ~10 KB.
        """
        out: dict[str, dict[str, int]] = {}
        for line in self.lines:
            for rx, kind in (
                (_MODEL_BUF, "weights"),
                (_KV_BUF, "kv_cache"),
                (_COMPUTE_BUF, "compute"),
            ):
                m = rx.search(line)
                if m:
                    slot = out.setdefault(m.group(1), {"weights": 0, "kv_cache": 0, "compute": 0})
                    slot[kind] += round(float(m.group(2)) * _MIB)
                    break
        return out


def buffer_device(buffer_name: str, names: dict[str, str]) -> str:
    """Map a buffer name to a device label.

    RPC buffers are named by the device's index *on its worker* plus the endpoint
    ('RPC0[127.0.0.1:50052]'), unlike RPC devices ('RPC0', 'RPC1', ... per process), so the
    full buffer name is looked up first.
    """
    if buffer_name in names:
        return names[buffer_name]
    base = buffer_name.split("[", 1)[0]
    if base in names:
        return names[base]
    if base.startswith("CPU"):
        return "CPU"
    return names.get(base, base)


def allocations_by_device(log: LlamaLog, names: dict[str, str]) -> list[DeviceAllocation]:
    merged: dict[str, dict[str, int]] = {}
    for buf, sizes in log.allocations().items():
        dev = buffer_device(buf, names)
        slot = merged.setdefault(dev, {"weights": 0, "kv_cache": 0, "compute": 0})
        for k, v in sizes.items():
            slot[k] += v
    return [DeviceAllocation(device=d, **s) for d, s in merged.items()]


_LOAD_FAILURES = [
    (
        "not within the file bounds",
        "The model file is incomplete or damaged: part of its data lies past the end of the "
        "file (a download cut short?). Download it again or pick another file.",
    ),
    (
        "unknown model architecture",
        "This llama.cpp does not know the model's architecture, so it cannot run it.",
    ),
    (
        "requires Flash Attention",
        "A quantized V cache needs flash attention: turn flash attention on, or keep the V "
        "cache at f16.",
    ),
    (
        "requires flash_attn",
        "A quantized V cache needs flash attention: turn flash attention on, or keep the V "
        "cache at f16.",
    ),
    ("failed to open", "The model file could not be opened."),
    ("invalid magic", "This is not a GGUF model file."),
    ("out of memory", "There was not enough memory for the model on one of its devices."),
    ("failed to allocate", "There was not enough memory for the model on one of its devices."),
]
_GENERIC = ("failed to load model", "failed to initialize the context", "failed to create")


def load_failure_words(errors: list[str], exception: str = "") -> str:
    """Why a load failed, for the person: llama.cpp's own reason (from its error log lines;
    the Python exception only says 'Failed to load model from file: PATH'), in words."""
    reasons = []
    for line in errors:
        text = line.split("error loading model: ", 1)[-1]
        text = re.sub(r"^\w+: ", "", text).strip().rstrip(".")  # "llama_model_load: ..."
        if text and not any(g in text.lower() for g in _GENERIC):
            reasons.append(text)
    said = reasons[-1] if reasons else ""
    for needle, words in _LOAD_FAILURES:
        if needle.lower() in said.lower():
            return f"{words} (llama.cpp: {said}.)"
    if said:
        return f"llama.cpp could not load the model: {said}."
    if "from file" in exception:  # the path is the person's own; the rest says nothing more
        return "llama.cpp could not load the model file, and gave no reason."
    return f"llama.cpp could not load the model: {exception or 'no reason given'}."
