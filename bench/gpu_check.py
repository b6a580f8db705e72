"""The GPU check's measurements (bench/gpu_check.sh builds the venv and calls this).

Side by side, on CUDA0 (or the CPU with --cpu-only):
1. generation through llama-cpp-python in this process vs the engine's streaming API;
2. the accelerator alone vs the accelerator + one loopback CPU worker (pp/tg, llama-bench's
   way, one engine per configuration, with the planner's predicted tg beside each);
3. the planner's per-device memory forecast vs what llama.cpp really allocated, for the
   demo model and a generated 1.5B shape.
--dry builds every plan and forecast and checks each part is there, loading nothing.

    python bench/gpu_check.py [--cpu-only] [--dry] [--reps 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from layerlab.core.demo_model import demo_model_path  # noqa: E402
from layerlab.core.gguf import read_facts  # noqa: E402
from layerlab.core.load_plan import DeviceRef, LoadPlan  # noqa: E402
from layerlab.core.planner.forecast import compare, forecast_plan  # noqa: E402
from tests.support.synthetic_gguf import ModelSpec, write_model  # noqa: E402

MiB = 1 << 20
# A 1.5B shape (Qwen2.5-1.5B's sizes, llama architecture), Q8_0, written sparse: llama.cpp
# allocates for it as for a real one; its weights are zeros.
SHAPE_1_5B = ModelSpec(
    n_layer=28,
    n_embd=1536,
    n_head=12,
    n_head_kv=2,
    n_ff=8960,
    n_vocab=151936,
    n_ctx_train=32768,
    name="generated 1.5B Q8_0",
)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def accel(cpu_only: bool) -> list[DeviceRef]:
    return [] if cpu_only else [DeviceRef.local("CUDA0")]


def api_vs_in_process(model: str, devices: list[DeviceRef], runs: int, dry: bool) -> list[str]:
    from _spine_common import N_TOKENS, PROMPT, median, time_stream
    from layerlab.core.engine.client import Delta
    from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready

    plan = LoadPlan(model, n_ctx=1024, devices=devices, n_threads=2)
    if dry:
        return [
            f"| in-process vs engine API | {(plan.devices and plan.devices[0].label) or 'CPU'} "
            "| (dry: would load twice and stream 128 greedy tokens, paired runs) | | |"
        ]
    from layerlab.core.engine.host import install_log_capture
    from layerlab.core.engine.llama_log import LlamaLog
    from layerlab.core.engine.model_session import ModelSession

    sampling = {"temperature": 0, "seed": 1, "max_tokens": N_TOKENS}
    log = LlamaLog()
    keep = install_log_capture(log)
    local = ModelSession(plan, log)
    local.load(lambda f: None)
    sup = EngineSupervisor()
    try:
        sup.start(plan)
        state = sup.wait_for((Ready, Failed), 180)
        if not isinstance(state, Ready):
            return [f"| in-process vs engine API | - | the engine did not load: {state} | | |"]
        client = sup.client()
        assert client is not None

        def via_api() -> float:
            events = client.stream_chat(PROMPT, **sampling)
            return time_stream(e for e in events if isinstance(e, Delta))[0]

        def in_process() -> float:
            chunks = local.llm.create_chat_completion(messages=PROMPT, stream=True, **sampling)
            return time_stream(
                c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")
            )[0]

        via_api(), in_process()
        api, inproc = [], []
        for _ in range(runs):
            api.append(via_api())
            inproc.append(in_process())
    finally:
        sup.close()
        local.llm.close()  # freed while the log callback lives (no segfault at exit)
        local.llm = None
        del keep
    a, b = median(api), median(inproc)
    where = devices[0].label if devices else "CPU"
    return [f"| in-process vs engine API | {where} | {b:.1f} | {a:.1f} | {a / b:.2f} |"]


def accel_vs_worker(model: str, devices: list[DeviceRef], reps: int, dry: bool) -> list[str]:
    from layerlab.core.bench import BenchRun, BenchRunner, BenchSettings
    from layerlab.core.bench.configs import BenchConfig, bench_context
    from layerlab.core.cluster.worker_check import probe
    from layerlab.core.planner.calibration import Calibration
    from layerlab.core.planner.devices import devices_from_probe
    from layerlab.core.planner.inputs import this_machine_devices
    from layerlab.core.planner.planner import Planner, PlanOptions
    from tests.conftest import WorkerProcess, free_port_pair

    facts = read_facts(model)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        worker = None if dry else WorkerProcess(free_port_pair(), Path(tmp), threads=2)
        try:
            here = this_machine_devices()
            local_label = devices[0].label if devices else None
            if worker is not None:
                remote = devices_from_probe(probe(worker.endpoint))
            else:  # dry: a worker as its probe would describe it
                from layerlab.core.planner.devices import host_device

                cpu = host_device(8 << 30, 16 << 30)
                remote = [
                    cpu.__class__(
                        "RPC 127.0.0.1:50052",
                        "CPU on 127.0.0.1:50052",
                        "127.0.0.1:50052",
                        DeviceRef.rpc("127.0.0.1:50052"),
                        cpu.free,
                        cpu.total,
                        cpu.bandwidth,
                        cpu.flops,
                        kind="cpu",
                    )
                ]
            all_devices = here + remote
            planner = Planner(facts, model, Calibration.load())
            ctx = bench_context(512, 128)
            rlabel = remote[0].label
            alone = {local_label: 1.0} if local_label else {}
            both = {rlabel: 1.0, local_label: 2.0} if local_label else {rlabel: 1.0}
            configs = []
            for name, ratios in [
                (f"{local_label or 'CPU'} alone", alone),
                (f"{local_label or 'CPU'} + one loopback CPU worker", both),
            ]:
                opts = PlanOptions(
                    strategy="manual" if ratios else "fastest",
                    ratios=ratios,
                    excluded={d.label for d in all_devices if not d.is_host} - set(ratios),
                    n_ctx=ctx,
                    n_threads=2,
                    # CPU only: the head's CPU keeps the first half, the worker the rest
                    cpu_layers=facts.n_layer // 2 if not local_label and ratios else None,
                )
                r = planner.plan(all_devices, opts)
                configs.append(
                    BenchConfig(
                        name, r.plan, "split", r.speed.prompt_tps, r.speed.generation_tps, "", r
                    )
                )
            if dry:
                for c in configs:
                    out.append(
                        f"| {c.name} | {c.placement_text} | (dry) predicted tg "
                        f"{c.predicted_tg:.1f} | | |"
                    )
                return out
            run = BenchRunner(calibration_path=Path(tmp) / "cal.json").run(
                BenchRun(model, facts.name), configs, BenchSettings(512, 128, reps, learn=False)
            )
            for r in run.rows:
                if r.status != "measured":
                    out.append(f"| {r.name} | {r.config.placement_text} | {r.reason} | | |")
                    continue
                out.append(
                    f"| {r.name} | {r.config.placement_text} | pp512 {r.pp[0]:.1f} · "
                    f"tg128 {r.tg[0]:.1f} | predicted tg {r.config.predicted_tg:.1f} | "
                    f"{(r.config.predicted_tg or 0) / (r.tg[0] or 1) - 1:+.0%} |"
                )
        finally:
            if worker is not None:
                worker.stop()
    return out


def forecast_vs_real(model: str, devices: list[DeviceRef], dry: bool) -> list[str]:
    from tests.support.dryrun import measure

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        models = {"SmolLM2-135M Q4_1": model}
        if not dry:
            models[SHAPE_1_5B.name] = str(
                write_model(Path(tmp) / "synthetic-1.5b.gguf", SHAPE_1_5B, sparse=True)
            )
        else:
            models[SHAPE_1_5B.name] = ""  # dry: not written (1.6 GB, sparse)
        for name, path in models.items():
            for ctx in (4096,):
                if not path:
                    out.append(f"| forecast vs real | {name} | (dry: would write and load) | | |")
                    continue
                facts = read_facts(path)
                plan = LoadPlan(path, n_ctx=ctx, devices=devices)
                forecast = forecast_plan(facts, plan)
                if dry:
                    for label, mem in forecast.items():
                        out.append(
                            f"| forecast vs real | {name} · {label} | forecast "
                            f"{mem.total / MiB:.1f} MiB | (dry) | |"
                        )
                    continue
                try:
                    actual = measure(plan, no_alloc=False, timeout=300).totals()
                except Exception as e:
                    out.append(f"| forecast vs real | {name} | could not load: {e} | | |")
                    continue
                for e in compare(forecast, actual):
                    out.append(
                        f"| forecast vs real | {name} · {e.device} | forecast "
                        f"{e.forecast / MiB:.1f} MiB | actual {e.actual / MiB:.1f} MiB | "
                        f"{e.percent:+.1f}% {'ok' if e.ok else 'OFF'} |"
                    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu-only", action="store_true", help="the CPU stands in for CUDA0")
    ap.add_argument("--dry", action="store_true", help="plan and check, load nothing")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    model = str(demo_model_path())
    devices = accel(args.cpu_only)
    t0 = time.monotonic()
    rows: list[str] = []
    for what, part in [
        ("in-process vs engine API", lambda: api_vs_in_process(model, devices, 3, args.dry)),
        ("alone vs + a worker", lambda: accel_vs_worker(model, devices, args.reps, args.dry)),
        ("forecast vs real", lambda: forecast_vs_real(model, devices, args.dry)),
    ]:
        say(f"== {what} ({time.monotonic() - t0:.0f} s)")
        try:
            rows += part()
        except Exception as e:  # one part failing must not lose the others' rows
            rows.append(f"| {what} | failed | {type(e).__name__}: {e} | | |")
    print(f"# GPU check ({'CPU only' if args.cpu_only else 'CUDA0'}{', dry' if args.dry else ''})")
    print("| check | where | figures | beside | ratio / error |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{time.monotonic() - t0:.0f} s")
    return 1 if any("| failed |" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
