"""After every load, a few tokens measured while the model is idle, for the speed model.

The bench teaches the speed model when a person runs one; most people never do. So once a
model is ready, the head hands the loaded engine to `measure_after_load`: in a thread of its
own it asks the engine's /layerlab/bench route (the same measurement, llama-bench's way) for
a few generated tokens at a time, only while the engine is idle, and records what the
figures say about this plan's devices and links (planner/calibration.py), so the next
forecast uses them.

It never delays the person: each step is a fraction of a second (STEP_S), it looks before
every step and stops for good at the first sign of a request (an answer running or waiting,
the model unloaded or replaced), so a request that arrives waits at most for the step in
flight. It does not come back later: a measurement clears the KV cache, and the person's
conversation is in it by then.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from layerlab.core.engine.supervisor import Ready
from layerlab.core.planner.calibration import Calibration

SETTLE_S = 0.5  # after Ready: the window's first request usually comes now, if at all
STEP_S = 0.25  # one measurement step lasts about this long: the most a request waits
FIRST_STEP_TOKENS = 4  # the first step sizes the others (the speed is not known yet)
MAX_STEP_TOKENS = 32
STEPS = 6  # measured steps; their median is recorded
STEP_TIMEOUT_S = 30.0


@dataclass
class Step:
    started: float  # time.monotonic()
    ended: float = 0.0
    n_gen: int = 0
    tok_s: float = 0.0


@dataclass
class AfterLoad:
    """One background measurement of a loaded model; `done` is set when it has ended."""

    state: Ready
    calibration_path: Path | None
    steps: list[Step] = field(default_factory=list)
    stepping: threading.Event = field(default_factory=threading.Event)  # a step was sent
    done: threading.Event = field(default_factory=threading.Event)
    stopped_because: str = ""  # why it ended early, in words ('' when it measured)
    learned: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self._stop.set()

    @property
    def tok_s(self) -> float | None:
        speeds = [s.tok_s for s in self.steps[1:] if s.tok_s > 0]  # the first one warms up
        return statistics.median(speeds) if speeds else None


def measure_after_load(head, state: Ready) -> AfterLoad:
    """Start measuring `state` (the head's engine, just ready) in the background."""
    job = AfterLoad(state, head.bench.calibration_path)

    def still_ours() -> bool:
        return head.supervisor.state is state and not head._closed and not job._stop.is_set()

    def run() -> None:
        try:
            _run(job, still_ours, head)
        except Exception as e:  # a background nicety: never a problem for the person
            job.stopped_because = f"the measurement failed: {e}"
        finally:
            job.done.set()

    threading.Thread(target=run, name="after-load", daemon=True).start()
    return job


def _idle(client) -> bool:
    try:
        status = client.status(timeout=2.0)
    except Exception:
        return False
    return status.get("state") == "idle" and not status.get("running") and not status.get("waiting")


def _run(job: AfterLoad, still_ours, head) -> None:
    state = job.state
    client = head.supervisor.client()
    if client is None:
        job.stopped_because = "no engine"
        return
    time.sleep(SETTLE_S)
    headers = {"Authorization": f"Bearer {state.token}"}
    n_gen = FIRST_STEP_TOKENS
    with httpx.Client(timeout=httpx.Timeout(STEP_TIMEOUT_S, connect=2.0)) as http:
        for _ in range(STEPS + 1):
            if not still_ours():
                job.stopped_because = "the model was unloaded or replaced"
                return
            if not _idle(client):
                job.stopped_because = "a request came in"
                return
            step = Step(time.monotonic(), n_gen=n_gen)
            job.steps.append(step)
            job.stepping.set()
            r = http.post(
                f"{state.url}/layerlab/bench",
                headers=headers,
                json={"n_prompt": 0, "n_gen": n_gen, "reps": 1},
            )
            step.ended = time.monotonic()
            if r.status_code != 200:
                job.stopped_because = "a request came in" if r.status_code == 429 else r.text
                return
            gen_ns = r.json().get("gen_ns") or []
            if not gen_ns or gen_ns[0] <= 0:
                job.stopped_because = "the engine measured nothing"
                return
            step.tok_s = n_gen / (gen_ns[0] / 1e9)
            n_gen = max(FIRST_STEP_TOKENS, min(MAX_STEP_TOKENS, round(STEP_S * step.tok_s)))
    tps = job.tok_s
    if tps and still_ours():
        job.learned = record(state, tps, job.calibration_path, head)
        if job.learned:
            head.bench.tell_learned(job.learned)  # the open window forecasts with them now


def record(state: Ready, tok_s: float, path: Path | None, head=None) -> list[str]:
    """What `tok_s` generated on `state`'s plan says about its devices and links, kept."""
    from layerlab.core.gguf import check_model_file
    from layerlab.core.load_plan import expected_layer_devices
    from layerlab.core.planner.forecast import forecast_plan
    from layerlab.core.planner.inputs import this_machine_devices
    from layerlab.core.planner.speed import SpeedModel

    plan = state.plan
    facts = check_model_file(plan.model_path)
    devices = {d.label: d for d in this_machine_devices()}
    if plan.workers and head is not None:
        from layerlab.core.planner.devices import devices_from_probe

        for w in plan.workers:
            r = head.results.get(w)
            if r is not None and r.ok:
                devices.update({d.label: d for d in devices_from_probe(r)})
    placement = expected_layer_devices(plan, facts.n_layer)
    memory = forecast_plan(facts, plan)
    spans, kv = [], []
    for label, mem in memory.items():
        dev = devices.get(label)
        if dev is None:
            return []  # a device not known here: its figures cannot be told apart
        blocks = [i for i, d in enumerate(placement[:-1]) if d == label]
        first, last = (blocks[0], blocks[-1] + 1) if blocks else (0, 0)
        spans.append((dev, first, last, placement[-1] == label))
        kv.append(mem.kv)
    cal = Calibration.load(path)
    # No thread count: the one loaded is not known to be the best (only a sweep says so),
    # and the figures keep the one a bench found.
    said = SpeedModel(facts).learn(spans, kv, tok_s, cal)
    if said:
        try:
            cal.save()
        except OSError:
            return []  # not kept: nothing changed for the forecasts
    return said
