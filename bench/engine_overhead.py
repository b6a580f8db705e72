"""Engine overhead: generation tok/s for 128 greedy tokens through the engine's streaming
HTTP API vs llama-cpp-python in this process (same model, threads, sampling). Runs are
interleaved so both see the same machine load. Target: ratio >= 0.97.

    .venv/bin/python bench/engine_overhead.py [--runs 5]
"""

from __future__ import annotations

import argparse
import sys

import psutil

from _spine_common import N_TOKENS, PROMPT, machine_note, median, time_stream
from layerlab.core.demo_model import demo_model_path
from layerlab.core.engine.client import Delta, EngineUnavailable
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready, WatchSettings
from layerlab.core.load_plan import LoadPlan
from tests.conftest import engine_pid


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

    # A loaded 2-core machine answers the watchdog's status calls late: a bench must not
    # have its engine declared frozen and killed mid-run (it was, twice, at load 13).
    sup = EngineSupervisor(watch=WatchSettings(engine_silence_s=120, engine_timeout_s=30))
    sup.start(plan)
    state = sup.wait_for((Ready, Failed), 90)
    assert isinstance(state, Ready), state
    client = sup.client()

    engine = psutil.Process(engine_pid())
    me = psutil.Process()
    cpu: dict[str, list[float]] = {"api": [], "api_client": [], "in_process": []}

    def cpu_s(p: psutil.Process) -> float:
        t = p.cpu_times()
        return t.user + t.system

    def via_api() -> float:
        e0, c0 = cpu_s(engine), cpu_s(me)
        tps, n = time_stream(
            e for e in client.stream_chat(PROMPT, **sampling) if isinstance(e, Delta)
        )
        # CPU seconds per token: the engine's (compute threads, decoder, HTTP loop) and
        # this client's (reading the stream); on 2 cores with 2 compute threads every
        # extra CPU second is taken from the compute
        cpu["api"].append((cpu_s(engine) - e0) / max(n, 1))
        cpu["api_client"].append((cpu_s(me) - c0) / max(n, 1))
        return tps

    def in_process() -> float:
        # llama-cpp-python itself on the same loaded model: the baseline the engine serves
        c0 = cpu_s(me)
        chunks = local.llm.create_chat_completion(messages=PROMPT, stream=True, **sampling)
        tps, n = time_stream(
            c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")
        )
        cpu["in_process"].append((cpu_s(me) - c0) / max(n, 1))
        return tps

    api, inproc = [], []
    try:
        via_api(), in_process()  # warm both
        for _ in range(args.runs):
            api.append(via_api())
            inproc.append(in_process())
    except EngineUnavailable:
        # say why the engine went, in its own words, instead of a traceback
        print(f"engine overhead: the engine stopped mid-run: {sup.state}", file=sys.stderr)
        raise SystemExit(1) from None
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
    api_cpu = median(cpu["api"][1:]) + median(cpu["api_client"][1:])  # warm-up left out
    own_cpu = median(cpu["in_process"][1:])
    print(
        f"  CPU ms per token: in-process {own_cpu * 1e3:.2f}; engine path "
        f"{api_cpu * 1e3:.2f} (engine {median(cpu['api'][1:]) * 1e3:.2f} + client "
        f"{median(cpu['api_client'][1:]) * 1e3:.2f}); extra {(api_cpu / own_cpu - 1):+.1%}"
        if own_cpu
        else "  CPU per token: not measured"
    )
    print(f"  {machine_note()}")


if __name__ == "__main__":
    main()
