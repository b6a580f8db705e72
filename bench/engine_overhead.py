"""Engine overhead: generation tok/s for 128 greedy tokens through the engine's streaming
HTTP API vs llama-cpp-python in this process (same model, threads, sampling). Runs are
interleaved so both see the same machine load. Target: ratio >= 0.97.

    .venv/bin/python bench/engine_overhead.py [--runs 5]
"""

from __future__ import annotations

import argparse

from _spine_common import N_TOKENS, PROMPT, machine_note, median, time_stream
from layerlab.core.demo_model import demo_model_path
from layerlab.core.engine.client import Delta
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready
from layerlab.core.load_plan import LoadPlan


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    plan = LoadPlan(str(demo_model_path()), n_ctx=1024, n_threads=args.threads)
    sampling = {"temperature": 0, "seed": 1, "max_tokens": N_TOKENS}

    from layerlab.core.engine.host import install_log_capture
    from layerlab.core.engine.llama_log import LlamaLog
    from layerlab.core.engine.model_session import ModelSession

    log = LlamaLog()
    keep = install_log_capture(log)
    local = ModelSession(plan, log)
    local.load(lambda f: None)

    sup = EngineSupervisor()
    sup.start(plan)
    state = sup.wait_for((Ready, Failed), 90)
    assert isinstance(state, Ready), state
    client = sup.client()

    def via_api() -> float:
        tps, _ = time_stream(
            e for e in client.stream_chat(PROMPT, **sampling) if isinstance(e, Delta)
        )
        return tps

    def in_process() -> float:
        # llama-cpp-python itself on the same loaded model: the baseline the engine serves
        chunks = local.llm.create_chat_completion(messages=PROMPT, stream=True, **sampling)
        tps, _ = time_stream(
            c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")
        )
        return tps

    api, inproc = [], []
    try:
        via_api(), in_process()  # warm both
        for _ in range(args.runs):
            api.append(via_api())
            inproc.append(in_process())
    finally:
        sup.stop()
        # llama.cpp logs while it frees a model; freed at interpreter exit, after the log
        # callback, that call lands in freed memory (a segfault at exit on the Xeon): free
        # the in-process model now, while the callback is alive (also when a run failed),
        # and drop the callback last.
        local.llm.close()
        local.llm = None
        del keep
    a, b = median(api), median(inproc)
    paired = median([x / y for x, y in zip(api, inproc, strict=True) if y])
    print(
        f"engine overhead, {N_TOKENS} greedy tokens, {args.threads} threads, "
        f"{args.runs} interleaved pairs"
    )
    print(
        f"  in-process llama-cpp-python : median {b:6.1f}  best {max(inproc):6.1f} tok/s  "
        f"{[round(x, 1) for x in inproc]}"
    )
    print(
        f"  engine streaming HTTP API   : median {a:6.1f}  best {max(api):6.1f} tok/s  "
        f"{[round(x, 1) for x in api]}"
    )
    print(
        f"  ratio API / in-process      : median of pairs {paired:.3f}, of medians {a / b:.3f}, "
        f"of bests {max(api) / max(inproc):.3f}   (target >= 0.97)"
    )
    print(f"  {machine_note()}")


if __name__ == "__main__":
    main()
