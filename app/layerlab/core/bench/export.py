"""A bench run as Markdown (for a person), CSV (for a spreadsheet) or llama-bench's JSON.

The JSON is what `llama-bench -o json` writes: an array with one object per test (a pp test
has n_gen 0, a tg test n_prompt 0), its fields named as llama-bench's `test::get_fields()`
(tools/llama-bench/llama-bench.cpp, at the llama.cpp this build vendors) plus the
`samples_ns` / `samples_ts` arrays its JSON printer adds, so tools that read llama-bench
output (compare-llama-bench.py, dashboards) read ours. Only measured configurations appear
there; failures are in the Markdown and the CSV, with their reasons.
"""

from __future__ import annotations

import csv
import io
import json
import time

from layerlab.core.bench.results import BenchRun, ConfigResult, mean_sd, tok_per_s

LLAMA_BENCH_FIELDS = (
    "build_commit",
    "build_number",
    "cpu_info",
    "gpu_info",
    "backends",
    "model_filename",
    "model_type",
    "model_size",
    "model_n_params",
    "n_batch",
    "n_ubatch",
    "n_threads",
    "cpu_mask",
    "cpu_strict",
    "poll",
    "type_k",
    "type_v",
    "n_gpu_layers",
    "n_cpu_moe",
    "split_mode",
    "main_gpu",
    "no_kv_offload",
    "flash_attn",
    "devices",
    "tensor_split",
    "tensor_buft_overrides",
    "use_mmap",
    "embeddings",
    "no_op_offload",
    "no_host",
    "n_prompt",
    "n_gen",
    "n_depth",
    "test_time",
    "avg_ns",
    "stddev_ns",
    "avg_ts",
    "stddev_ts",
)
JSON_EXTRA_FIELDS = ("samples_ns", "samples_ts")
BUILD_COMMIT = "0c1e570"  # the llama.cpp llama-cpp-python 0.3.36 vendors (FACTS.md)

CSV_FIELDS = (
    "configuration",
    "placement",
    "status",
    "reason",
    "n_prompt",
    "n_gen",
    "reps",
    "pp_ts",
    "pp_stddev",
    "pp_predicted",
    "pp_error",
    "tg_ts",
    "tg_stddev",
    "tg_predicted",
    "tg_error",
    "first_token_ms",
    "load_s",
    "memory_bytes",
)


def _num(x: float | None, digits: int = 2) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x * 100:+.0f}%"


def _pm(mean: float | None, sd: float | None) -> str:
    return "–" if mean is None else f"{mean:.1f} ± {sd or 0.0:.1f}"


def to_markdown(run: BenchRun) -> str:
    pp, tg = f"pp{run.n_prompt}", f"tg{run.n_gen}"
    lines = [
        f"# Bench: {run.model_name or run.model_path}",
        "",
        f"{run.cpu_info} · {run.reps} repetition{'s' if run.reps != 1 else ''} · "
        f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(run.started_at))}",
        "",
        f"| configuration | placement | {pp} t/s | predicted | error | {tg} t/s | predicted "
        "| error | first token ms | memory |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in run.measured:
        c = r.config
        lines.append(
            f"| {c.name} | {r.placement_text or c.placement_text} | {_pm(*r.pp)} | "
            f"{_num(c.predicted_pp, 1) or '–'} | {_pct(r.pp_error) or '–'} | {_pm(*r.tg)} | "
            f"{_num(c.predicted_tg, 1) or '–'} | {_pct(r.tg_error) or '–'} | "
            f"{_num(r.first_token_ms, 1) or '–'} | {r.memory_text() or '–'} |"
        )
    others = [r for r in run.rows if r.status != "measured"]
    if others:
        lines += ["", "Not measured:", ""]
        for r in others:
            why = r.reason.replace("\n", " ")
            lines.append(f"- **{r.config.name}** ({r.config.placement_text}): {why}")
    if run.learned:
        lines += ["", "The speed model learned: " + "; ".join(run.learned) + "."]
    return "\n".join(lines) + "\n"


def _csv_row(run: BenchRun, r: ConfigResult) -> dict:
    c = r.config
    pp_mean, pp_sd = r.pp
    tg_mean, tg_sd = r.tg
    return {
        "configuration": c.name,
        "placement": r.placement_text or c.placement_text,
        "status": r.status,
        "reason": r.reason,
        "n_prompt": run.n_prompt,
        "n_gen": run.n_gen,
        "reps": run.reps,
        "pp_ts": _num(pp_mean, 3),
        "pp_stddev": _num(pp_sd, 3),
        "pp_predicted": _num(c.predicted_pp, 3),
        "pp_error": _num(r.pp_error, 4),
        "tg_ts": _num(tg_mean, 3),
        "tg_stddev": _num(tg_sd, 3),
        "tg_predicted": _num(c.predicted_tg, 3),
        "tg_error": _num(r.tg_error, 4),
        "first_token_ms": _num(r.first_token_ms, 3),
        "load_s": _num(r.load_s, 3),
        "memory_bytes": sum(a.weights + a.kv_cache + a.compute for a in r.memory) or "",
    }


def to_csv(run: BenchRun) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in run.rows:
        w.writerow(_csv_row(run, r))
    return out.getvalue()


def _test(run: BenchRun, r: ConfigResult, n_prompt: int, n_gen: int, ns: list[int]) -> dict:
    p = r.config.plan
    loaded = r.loaded
    ts = tok_per_s(ns, n_prompt + n_gen)
    avg_ts, sd_ts = mean_sd(ts)
    avg_ns, sd_ns = mean_sd([float(x) for x in ns])
    workers = bool(p.workers)
    return {
        "build_commit": BUILD_COMMIT,
        "build_number": 0,
        "cpu_info": run.cpu_info,
        "gpu_info": "",
        "backends": "CPU,RPC" if workers else "CPU",
        "model_filename": run.model_path,
        "model_type": run.model_type,
        "model_size": run.model_size,
        "model_n_params": run.model_n_params,
        "n_batch": loaded.get("n_batch", p.n_batch),
        "n_ubatch": loaded.get("n_ubatch", p.n_ubatch),
        "n_threads": loaded.get("n_threads", p.n_threads or 0),
        "cpu_mask": "0x0",
        "cpu_strict": False,
        "poll": 50,
        "type_k": p.type_k,
        "type_v": p.type_v,
        "n_gpu_layers": 99 if p.n_gpu_layers < 0 else p.n_gpu_layers,
        "n_cpu_moe": 0,
        "split_mode": p.split_mode,
        "main_gpu": p.main_gpu,
        "no_kv_offload": False,
        "flash_attn": bool(p.flash_attn),
        "devices": "/".join(d.label for d in p.devices) or "auto",
        "tensor_split": "/".join(f"{s:.2f}" for s in p.tensor_split) or "0.00",
        "tensor_buft_overrides": "none",
        "use_mmap": p.use_mmap,
        "embeddings": False,
        "no_op_offload": 0,
        "no_host": False,
        "n_prompt": n_prompt,
        "n_gen": n_gen,
        "n_depth": 0,
        "test_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run.started_at)),
        "avg_ns": int(avg_ns or 0),
        "stddev_ns": int(sd_ns or 0),
        "avg_ts": avg_ts or 0.0,
        "stddev_ts": sd_ts or 0.0,
        "samples_ns": list(ns),
        "samples_ts": ts,
    }


def to_llama_bench_json(run: BenchRun) -> str:
    tests = []
    for r in run.measured:
        if r.prompt_ns:
            tests.append(_test(run, r, run.n_prompt, 0, r.prompt_ns))
        if r.gen_ns:
            tests.append(_test(run, r, 0, run.n_gen, r.gen_ns))
    return json.dumps(tests, indent=2) + "\n"


FORMATS = {"md": to_markdown, "csv": to_csv, "json": to_llama_bench_json}
