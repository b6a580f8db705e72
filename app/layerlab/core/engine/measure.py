"""llama-bench's measurement, inside the engine process, on the model it has loaded.

Like llama-bench (tools/llama-bench/llama-bench.cpp): random tokens, the KV cache cleared
before each repetition; a prompt test decodes n_prompt tokens in batches of n_batch, a
generation test decodes n_gen single tokens one after another. One warm-up run of each first.
Samples are nanoseconds per repetition; tok/s is tokens over each sample. Runs only in the
engine process (it calls llama.cpp on the loaded context).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass, field

MAX_TOKENS = 8192  # per test: a bench asks for pp512/tg128; more is a mistake, not a bench
MAX_REPS = 50


@dataclass
class Measured:
    """What one bench request measured; samples in nanoseconds, one per repetition."""

    n_prompt: int
    n_gen: int
    prompt_ns: list[int] = field(default_factory=list)
    gen_ns: list[int] = field(default_factory=list)
    first_token_ns: int = 0  # one prompt of n_prompt tokens and the first token after it
    stopped: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def measure(
    session,
    n_prompt: int,
    n_gen: int,
    reps: int,
    stop: threading.Event,
    seed: int = 42,
) -> Measured:
    """Measure pp`n_prompt` and tg`n_gen` on `session` (a loaded ModelSession)."""
    import llama_cpp.llama_cpp as low

    llm = session.llm
    assert llm is not None
    n_prompt = max(0, min(int(n_prompt), MAX_TOKENS))
    n_gen = max(0, min(int(n_gen), MAX_TOKENS))
    reps = max(1, min(int(reps), MAX_REPS))
    ctx = llm.ctx
    n_ctx = low.llama_n_ctx_seq(ctx)  # one sequence's share: the decoder keeps one per slot
    if n_prompt + 1 > n_ctx or n_gen + 1 > n_ctx:
        raise ValueError(f"the test needs more than the loaded context of {n_ctx} tokens")
    n_batch = max(1, low.llama_n_batch(ctx))
    n_vocab = low.llama_vocab_n_tokens(low.llama_model_get_vocab(llm.model))
    rng = random.Random(seed)
    memory = low.llama_get_memory(ctx)

    def clear() -> None:
        low.llama_memory_clear(memory, True)

    def decode(tokens: list[int]) -> None:
        arr = (low.llama_token * len(tokens))(*tokens)
        rc = low.llama_decode(ctx, low.llama_batch_get_one(arr, len(tokens)))
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        session.last_progress = time.monotonic()

    def prompt(n: int) -> None:
        tokens = [rng.randrange(n_vocab) for _ in range(n)]
        for i in range(0, n, n_batch):
            decode(tokens[i : i + n_batch])
        low.llama_synchronize(ctx)

    def generate(n: int) -> None:
        token = rng.randrange(n_vocab)
        for _ in range(n):
            decode([token])
            low.llama_synchronize(ctx)
            token = rng.randrange(n_vocab)

    out = Measured(n_prompt, n_gen)
    session.generating = True
    try:
        # warm-up (llama-bench does one of each too): first-use allocations, page faults
        if n_prompt:
            clear()
            prompt(min(n_prompt, n_batch))
        if n_gen:
            clear()
            generate(1)
        for _ in range(reps):
            if stop.is_set():
                out.stopped = True
                break
            if n_prompt:
                clear()
                t0 = time.perf_counter_ns()
                prompt(n_prompt)
                t1 = time.perf_counter_ns()
                generate(1)
                out.prompt_ns.append(t1 - t0)
                ttft = time.perf_counter_ns() - t0
                out.first_token_ns = ttft if not out.first_token_ns else out.first_token_ns
            if stop.is_set():
                out.stopped = True
                break
            if n_gen:
                clear()
                t0 = time.perf_counter_ns()
                generate(n_gen)
                out.gen_ns.append(time.perf_counter_ns() - t0)
    finally:
        clear()
        llm.reset()  # the prefix cache Llama keeps in Python no longer matches the context
        session.generating = False
        session.last_progress = time.monotonic()
    return out
