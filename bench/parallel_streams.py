"""Many at once: ten streaming requests sent together, LayerLab vs llama.cpp's llama-server
with the same slots, model and threads, side by side in one run; and single-stream
generation speed with batching on vs the engine before batching.

    bench/setup_llama_server.sh            # once: builds build/llama-server/bin/llama-server
    .venv/bin/python bench/parallel_streams.py [--streams 10] [--slots 4] [--threads 2] [--reps 10]
    .venv/bin/python bench/parallel_streams.py --single [--baseline REF] [--runs 5]

Targets: total time <= llama-server's; single-stream ratio >= 0.97. `--baseline REF` takes
the engine from git REF (default: the commit before batching) with `git archive` into
build/bench-baseline/ (no worktree, nothing in .git changes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from _spine_common import machine_note
from layerlab.core.demo_model import demo_model_path
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready
from layerlab.core.load_plan import LoadPlan

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "build" / "llama-server" / "bin" / "llama-server"
BASELINE_REF = "5ad7fc5^"  # the engine before batching (one answer at a time)
TOPICS = [
    "a lighthouse keeper",
    "a dragon who bakes bread",
    "the first city on Mars",
    "a clock that runs backwards",
    "two rival chess players",
    "a lost dog finding home",
    "an underwater library",
    "a robot learning to paint",
    "a storm over the mountains",
    "a market in old Venice",
    "a train that never stops",
    "the last tree on earth",
]


@dataclass
class Result:
    ttft: float | None = None
    total: float = 0.0
    pieces: int = 0
    error: str = ""


def story(topic: str, max_tokens: int, streamed: bool) -> dict:
    """One bench request: a greedy story about `topic`."""
    return {
        "messages": [{"role": "user", "content": f"Write a detailed story about {topic}."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 1,
        "stream": streamed,
    }


def stream(base: str, key: str, topic: str, max_tokens: int, t0: float, out: Result) -> None:
    body = story(topic, max_tokens, streamed=True)
    try:
        with (
            httpx.Client(timeout=600, trust_env=False) as http,
            http.stream(
                "POST",
                base + "/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
            ) as r,
        ):
            if r.status_code != 200:
                out.error = f"HTTP {r.status_code}"
                return
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                for c in chunk.get("choices") or []:
                    if (c.get("delta") or {}).get("content"):
                        if out.ttft is None:
                            out.ttft = time.monotonic() - t0
                        out.pieces += 1
    except httpx.HTTPError as e:
        out.error = str(e)
    out.total = time.monotonic() - t0


def whole(base: str, key: str, topic: str, max_tokens: int, t0: float, out: Result) -> None:
    """`stream`'s request for one whole (not streamed) reply: its tokens, no first token."""
    try:
        with httpx.Client(timeout=600, trust_env=False) as http:
            r = http.post(
                base + "/v1/chat/completions",
                json=story(topic, max_tokens, streamed=False),
                headers={"Authorization": f"Bearer {key}"},
            )
            if r.status_code != 200:
                out.error = f"HTTP {r.status_code}"
            else:
                out.pieces = r.json()["usage"]["completion_tokens"]
    except httpx.HTTPError as e:
        out.error = str(e)
    out.total = time.monotonic() - t0


def run_streams(
    base: str, key: str, n: int, max_tokens: int, streamed: bool = True
) -> tuple[float, list[Result]]:
    results = [Result() for _ in range(n)]
    t0 = time.monotonic()
    ask = stream if streamed else whole
    threads = [
        threading.Thread(
            target=ask, args=(base, key, TOPICS[i % len(TOPICS)], max_tokens, t0, results[i])
        )
        for i in range(n)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - t0, results


def start_layerlab(plan: LoadPlan, env: dict | None = None) -> tuple[EngineSupervisor, Ready]:
    python = sys.executable
    sup = EngineSupervisor(python=python)
    old = dict(os.environ)
    if env:
        os.environ.update(env)
    try:
        sup.start(plan)
        state = sup.wait_for((Ready, Failed), 120)
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert isinstance(state, Ready), state
    return sup, state


def start_llama_server(model: str, slots: int, ctx: int, threads: int, port: int, fa: str):
    if not SERVER.exists():
        sys.exit(f"no llama-server at {SERVER}: run bench/setup_llama_server.sh first")
    cmd = [
        str(SERVER), "-m", model, "--port", str(port), "--host", "127.0.0.1",
        "-np", str(slots), "-c", str(ctx * slots), "-t", str(threads), "-tb", str(threads),
        "--no-webui", "-lv", "0", "-fa", fa,
    ]  # fmt: skip
    if "amx" in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.lower():
        cmd.append("--no-repack")  # FACTS.md: GCC 12 miscompiles the AMX repack path
    env = dict(os.environ, LD_LIBRARY_PATH=str(SERVER.parent))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=1, trust_env=False).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            sys.exit(f"llama-server exited with {proc.returncode}: {' '.join(cmd)}")
        time.sleep(0.2)
    proc.kill()
    sys.exit("llama-server did not become ready")


def describe(name: str, total: float, results: list[Result]) -> str:
    ttfts = sorted(r.ttft for r in results if r.ttft is not None)
    pieces = sum(r.pieces for r in results)
    errors = [r.error for r in results if r.error]
    return (
        f"| {name} | {total:.2f} s | {ttfts[0]:.2f} | {statistics.median(ttfts):.2f} | "
        f"{ttfts[-1]:.2f} | {pieces} | {pieces / total:.1f} | {len(errors)} |"
        if ttfts
        else f"| {name} | {total:.2f} s | - | - | - | {pieces} | - | {len(errors)} |"
    )


def llama_server_run(args: argparse.Namespace, model: str) -> tuple[float, list[Result]]:
    proc, base = start_llama_server(
        model, args.slots, args.ctx, args.threads, args.port, args.flash_attn
    )
    try:
        run_streams(base, "none", 2, 8)  # warm-up
        return run_streams(base, "none", args.streams, args.max_tokens)
    finally:
        proc.terminate()
        proc.wait(10)


def many(args: argparse.Namespace) -> None:
    model = str(demo_model_path())
    plan = LoadPlan(
        model,
        n_ctx=args.ctx,
        n_threads=args.threads,
        parallel=args.slots,
        flash_attn=args.flash_attn == "on",
    )
    rows = []
    per_request = {}
    one = plan.model_copy(update={"parallel": 1})
    for rep in range(args.reps):
        sides = [("LayerLab", plan)] + ([("LayerLab 1 slot", one)] if args.one_slot else [])
        if not args.no_llama_server:
            sides.append(("llama-server", None))
        if rep % 2:  # every other rep the other goes first: neither always runs on a rested VM
            sides.reverse()
        for name, p in sides:
            if p is None:
                rows.append(("llama-server", rep, *llama_server_run(args, model)))
                continue
            sup, ready = start_layerlab(p)
            try:
                run_streams(ready.url, sup.token, 2, 8)  # warm-up
                total, res = run_streams(ready.url, sup.token, args.streams, args.max_tokens)
                rows.append((name, rep, total, res))
            finally:
                sup.stop()
    print(machine_note())
    print(
        f"\n{args.streams} streams at once, {args.slots} slots, {args.threads} threads, "
        f"max_tokens {args.max_tokens}, context {args.ctx} per slot, greedy, "
        f"flash attention {args.flash_attn} on both\n"
    )
    print("| server | total | first token min | median | max (s) | pieces | pieces/s | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rep, total, res in rows:
        print(describe(f"{name} #{rep + 1}", total, res))
        per_request.setdefault(name, []).append([round(r.ttft or -1, 2) for r in res])
    names = list(dict.fromkeys(n for n, _, _, _ in rows))
    for name in names:
        totals = [t for n, _, t, _ in rows if n == name]
        print(f"{name}: median total {statistics.median(totals):.2f} s")
    if "llama-server" in names:
        lt = statistics.median([t for n, _, t, _ in rows if n == "LayerLab"])
        st = statistics.median([t for n, _, t, _ in rows if n == "llama-server"])
        # each rep runs the two back to back: its ratio sees one moment's machine load
        per_rep = {
            rep: {n: t for n, r, t, _ in rows if r == rep}
            for rep in range(max(r for _, r, _, _ in rows) + 1)
        }
        pairs = [v["LayerLab"] / v["llama-server"] for v in per_rep.values() if len(v) >= 2]
        print(
            f"total time LayerLab / llama-server: {lt / st:.2f} of medians, "
            f"{statistics.median(pairs):.2f} median of the reps' ratios "
            f"({', '.join(f'{x:.2f}' for x in pairs)}) (target <= 1.00); "
            f"LayerLab first to finish in {sum(x < 1 for x in pairs)} of {len(pairs)} reps"
        )
        if len(pairs) >= 3:
            # one rep swings ~9% here: whether the target is met is the interval's to say
            logs = [math.log(x) for x in pairs]
            mid, se = statistics.mean(logs), statistics.stdev(logs) / math.sqrt(len(logs))
            print(
                f"geometric mean of the reps' ratios {math.exp(mid):.3f}, 95% interval "
                f"{math.exp(mid - 1.96 * se):.3f}-{math.exp(mid + 1.96 * se):.3f} "
                f"(met when the interval's top is <= 1.00)"
            )
    print("first token per request (s):", json.dumps(per_request))
    # where a total's difference lies: the wall time between a stream's tokens, as its client
    # saw it, for the requests in each wave of `slots` (in the order their first tokens came)
    print(f"ms between tokens, by wave of {args.slots} (median over reps):")
    for name in names:
        waves: dict[int, list[float]] = {}
        for n, _, _, res in rows:
            if n != name:
                continue
            done = sorted((r for r in res if r.ttft is not None and r.pieces > 1), key=_ttft)
            for i, r in enumerate(done):
                gap = (r.total - r.ttft) / (r.pieces - 1) * 1000  # type: ignore[operator]
                waves.setdefault(i // args.slots, []).append(gap)
        print(f"  {name}: " + ", ".join(f"{statistics.median(v):.1f}" for v in waves.values()))


def _ttft(r: Result) -> float:
    return r.ttft or 0.0


BASELINE_SITE = ROOT / "build" / "bench-baseline" / "site"  # its one dependency LayerLab dropped


def baseline_tree(ref: str) -> Path:
    out = ROOT / "build" / "bench-baseline" / ref.replace("^", "-parent")
    if not (out / "app" / "layerlab").exists():
        out.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref, "app"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out / "app"


BASELINE_HOST = """
import sys
from layerlab.core.engine.supervisor import EngineSupervisor, Ready, Failed
from layerlab.core.load_plan import LoadPlan
sup = EngineSupervisor()
sup.start(LoadPlan(sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=int(sys.argv[3])))
s = sup.wait_for((Ready, Failed), 120)
if isinstance(s, Ready):
    print(s.url, sup.token, flush=True)
else:  # the bench reads an empty line and says so; why is here, on stderr
    print(s, file=sys.stderr, flush=True)
sys.stdin.read()
sup.stop()
"""


class _Remote:
    """The baseline engine's supervisor lives in its helper process."""

    def __init__(self, token: str) -> None:
        self.token = token

    def stop(self) -> None:
        pass


def single(args: argparse.Namespace) -> None:
    model = str(demo_model_path())
    if not (BASELINE_SITE / "sse_starlette").is_dir():
        sys.exit(f"no {BASELINE_SITE}/sse_starlette: run bench/setup_llama_server.sh first")
    old_app = baseline_tree(args.baseline)
    configs = [
        ("before batching", LoadPlan(model, n_ctx=args.ctx, n_threads=args.threads), old_app),
        (
            f"batching on ({args.slots} slots)",
            LoadPlan(model, n_ctx=args.ctx, n_threads=args.threads, parallel=args.slots),
            None,
        ),
    ]
    engines = []
    helpers = []
    for name, plan, app in configs:
        if app is None:
            engines.append((name, *start_layerlab(plan)))
            continue
        # the old engine with its own supervisor, in a process that imports the old tree
        helper = subprocess.Popen(
            [
                sys.executable,
                "-c",
                BASELINE_HOST,
                plan.model_path,
                str(args.ctx),
                str(args.threads),
            ],
            env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(app), str(BASELINE_SITE)])),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        helpers.append(helper)
        assert helper.stdout is not None
        said = helper.stdout.readline().split()
        if len(said) != 2:
            sys.exit(f"the baseline engine ({args.baseline}) did not start: see its log above")
        url, token = said
        engines.append((name, _Remote(token), Ready(plan, url, "", None, token=token)))  # type: ignore[arg-type]
    rates: dict[str, list[float]] = {name: [] for name, _, _ in engines}
    try:
        for _ in range(args.runs):  # interleaved: both see the same machine load
            for name, sup, ready in engines:
                _, res = run_streams(ready.url, sup.token, 1, args.max_tokens)
                r = res[0]
                if r.ttft is not None and r.pieces > 1:
                    rates[name].append((r.pieces - 1) / (r.total - r.ttft))
                else:
                    print(f"{name}: no answer ({r.error or 'no pieces'})", file=sys.stderr)
    finally:
        for _, sup, _ in engines:
            sup.stop()
        for h in helpers:
            h.communicate("", timeout=30)
    print(machine_note())
    print(f"\nsingle stream, {args.max_tokens} greedy tokens, {args.threads} threads, medians:")
    for name, xs in rates.items():
        print(
            f"  {name}: {statistics.median(xs):.1f} pieces/s  ({', '.join(f'{x:.1f}' for x in xs)})"
        )
    before, after = (statistics.median(xs) for xs in rates.values())
    print(f"ratio batching on / before: {after / before:.3f} (target >= 0.97)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=1024, help="context per slot")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=10)  # one rep swings 10-20% here
    ap.add_argument("--port", type=int, default=8791)
    # the same attention kernel on both sides: llama-server's own default (auto) is on for
    # the CPU; LayerLab's plan says it explicitly
    ap.add_argument("--flash-attn", choices=["on", "off"], default="on")
    ap.add_argument("--single", action="store_true")
    ap.add_argument("--one-slot", action="store_true", help="also LayerLab with one slot")
    ap.add_argument("--no-llama-server", action="store_true", help="LayerLab only")
    ap.add_argument("--baseline", default=BASELINE_REF)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    single(args) if args.single else many(args)


if __name__ == "__main__":
    main()
