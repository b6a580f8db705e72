"""Runs a bench: each configuration in its own engine process, one after another.

For each configuration: load it through an EngineSupervisor (the same road every load
takes: the file check, the workers' probes, the engine process), ask the engine to measure
(POST /layerlab/bench: warm-up, then pp and tg with random tokens, llama-bench's way), read
the per-device memory from its placement, unload it, and wait until its workers answer a
probe again (a worker serves one head at a time) before the next. A configuration that does
not fit or fails to load is recorded with its reason and the run goes on. Cancel stops the
engine at once (which releases its workers). Afterwards the measured generation speeds are
handed to the speed model (planner/calibration.py), so the next forecast uses them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from layerlab.core.bench.configs import BenchConfig
from layerlab.core.bench.results import BenchRun, ConfigResult
from layerlab.core.cluster.worker_check import probe
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Loading, Ready
from layerlab.core.planner.calibration import Calibration
from layerlab.core.subscribers import Subscribers

LOAD_TIMEOUT_S = 300.0
RELEASE_TIMEOUT_S = 10.0  # a worker answers a probe again this soon after its engine ends


@dataclass(frozen=True)
class BenchSettings:
    n_prompt: int = 512
    n_gen: int = 128
    reps: int = 5
    learn: bool = True  # record what was measured for the speed model


@dataclass(frozen=True)
class BenchProgress:
    """Configuration `index` is at `fraction` (0..1) of its turn; `row` as it stands."""

    index: int
    fraction: float
    stage: str
    row: ConfigResult


@dataclass(frozen=True)
class BenchFinished:
    run: BenchRun


BenchEvent = BenchProgress | BenchFinished


def cpu_info() -> str:
    """The CPU's model name, as llama-bench's cpu_info says it."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine()


class BenchRunner:
    """One bench at a time. `make_supervisor` builds the supervisor each run loads through
    (the head's routes for paired workers); `model_in_use` says, in words, why a bench
    cannot run now ('' when it can)."""

    def __init__(
        self,
        make_supervisor: Callable[[], EngineSupervisor] | None = None,
        calibration_path: Path | None = None,
        model_in_use: Callable[[], str] = lambda: "",
    ):
        self._make = make_supervisor or EngineSupervisor
        self.calibration_path = calibration_path
        self._model_in_use = model_in_use
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._supervisor: EngineSupervisor | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.last: BenchRun | None = None
        # who forecasts with the recorded figures (the window's layer map) re-reads them
        # when a run or a load has recorded new ones, instead of at the next start
        self._learned: Subscribers[list[str]] = Subscribers()

    @property
    def running(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive()

    def start(
        self,
        run: BenchRun,
        configs: list[BenchConfig],
        settings: BenchSettings,
        on_event: Callable[[BenchEvent], None] = lambda e: None,
    ) -> None:
        """Run in the background; events come from the bench's thread. Raises RuntimeError
        (in words) when a bench is running or the machines are in use."""
        with self._lock:
            if self.running:
                raise RuntimeError("A bench is already running.")
            why = self._model_in_use()
            if why:
                raise RuntimeError(why)
            self._cancel.clear()
            self._thread = threading.Thread(
                target=self.run,
                args=(run, configs, settings, on_event),
                name="bench",
                daemon=True,
            )
            self._thread.start()

    def on_learned(self, callback: Callable[[list[str]], object]) -> Callable[[], None]:
        """`callback(lines)` each time new figures were written to `calibration_path` (a
        bench run's learn, the measurement after a load), from that thread; returns the
        call that unsubscribes it."""
        return self._learned.add(callback)

    def tell_learned(self, said: list[str]) -> None:
        """The figures at `calibration_path` changed (`said`: what, in words)."""
        if said:
            self._learned.tell(list(said))

    def wait(self, timeout: float | None = None) -> BenchRun | None:
        t = self._thread
        if t is not None:
            t.join(timeout)
        return self.last

    def cancel(self) -> None:
        """Stop now: the engine measuring is ended (its workers are released with it)."""
        self._cancel.set()
        sup = self._supervisor
        if sup is not None:
            sup.stop(quiet=True)

    def close(self) -> None:
        self._closed = True
        self.cancel()
        self.wait(15)

    # -- the run, on the caller's thread ----------------------------------------------
    def run(
        self,
        run: BenchRun,
        configs: list[BenchConfig],
        settings: BenchSettings,
        on_event: Callable[[BenchEvent], None] = lambda e: None,
    ) -> BenchRun:
        run.n_prompt, run.n_gen, run.reps = settings.n_prompt, settings.n_gen, settings.reps
        run.cpu_info = run.cpu_info or cpu_info()
        run.rows = [
            ConfigResult(c, n_prompt=settings.n_prompt, n_gen=settings.n_gen) for c in configs
        ]
        sup = self._make()
        self._supervisor = sup
        try:
            for i, row in enumerate(run.rows):
                if self._cancel.is_set() or self._closed:
                    row.status, row.reason = "cancelled", "The bench was cancelled."
                    continue
                self._one(i, row, sup, settings, on_event)
        finally:
            self._supervisor = None
            with contextlib.suppress(Exception):
                sup.close()
        run.cancelled = self._cancel.is_set()
        if settings.learn and not run.cancelled:
            run.learned = self.learn(run)
        self.last = run
        with contextlib.suppress(Exception):
            on_event(BenchFinished(run))
        return run

    def _one(self, i, row: ConfigResult, sup, settings: BenchSettings, on_event) -> None:
        def tell(fraction: float, stage: str) -> None:
            with contextlib.suppress(Exception):
                on_event(BenchProgress(i, fraction, stage, row))

        config = row.config
        if config.reason:
            row.status, row.reason = "failed", config.reason
            tell(1.0, "does not fit")
            return
        tell(0.0, "loading")
        sup.start(config.plan)
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        state = sup.state
        while time.monotonic() < deadline and not self._cancel.is_set():
            state = sup.state
            if isinstance(state, Ready | Failed):
                break
            if isinstance(state, Loading):
                tell(0.4 * state.fraction, state.stage)
            time.sleep(0.05)
        try:
            if self._cancel.is_set():
                row.status, row.reason = "cancelled", "The bench was cancelled."
                return
            if isinstance(state, Failed):
                row.status, row.reason = "failed", state.message
                return
            if not isinstance(state, Ready):
                row.status, row.reason = "failed", f"It did not load in {LOAD_TIMEOUT_S:g} s."
                return
            row.load_s = state.load_s
            row.memory = list(state.placement.allocations)
            row.loaded = dict(state.loaded)
            row.placement_text = state.placement_text
            tell(0.5, "measuring")
            try:
                measured = _measure(state, settings)
            except Exception as e:
                if self._cancel.is_set():
                    row.status, row.reason = "cancelled", "The bench was cancelled."
                else:
                    row.status, row.reason = "failed", f"The measurement failed: {e}"
                return
            row.prompt_ns = [int(x) for x in measured.get("prompt_ns", [])]
            row.gen_ns = [int(x) for x in measured.get("gen_ns", [])]
            ttft = measured.get("first_token_ns") or 0
            row.first_token_ms = ttft / 1e6 if ttft else None
            row.status = "cancelled" if measured.get("stopped") else "measured"
        finally:
            sup.stop(quiet=True)
            _wait_released(config.plan.workers, sup)
            tell(1.0, row.status)

    # -- what the speed model takes from it ----------------------------------------
    def learn(self, run: BenchRun) -> list[str]:
        """Hand the measured generation speeds to the speed model's calibration, devices
        alone first (they are each one unknown), then placements over links."""
        cal = Calibration.load(self.calibration_path)
        said: list[str] = []
        rows = [r for r in run.measured if r.config.forecast is not None and r.tg[0]]
        threaded = [r for r in rows if r.config.kind == "threads" and not r.config.plan.devices]
        if threaded:
            # The thread sweep on the CPU alone: its best row sets the CPU's figures and
            # the thread count loads use from now on.
            best = max(threaded, key=lambda r: r.tg[0] or 0.0)
            said += _learn(best, cal, threads=best.config.plan.n_threads)
        for r in sorted(
            rows, key=lambda r: (len(r.config.plan.workers), len(r.config.plan.devices))
        ):
            if r.config.kind == "threads" or (threaded and not r.config.plan.devices):
                continue
            said += _learn(r, cal)
        try:
            cal.save()
        except OSError as e:
            said.append(f"Could not keep the measured figures: {e}")
        else:
            self.tell_learned(said)
        return said


def _learn(row: ConfigResult, cal: Calibration, threads: int | None = None) -> list[str]:
    from layerlab.core.planner.speed import SpeedModel

    f = row.config.forecast
    assert f is not None
    spans = [(d.device, d.first, d.last, d.has_output) for d in f.devices]
    kv = [d.memory.kv for d in f.devices]
    return SpeedModel(f.facts).learn(spans, kv, row.tg[0] or 0.0, cal, threads, row.pp[0])


def _measure(state: Ready, settings: BenchSettings) -> dict:
    """Ask the loaded engine to measure; generous timeout (a slow rig's pp512 x reps)."""
    with httpx.Client(timeout=httpx.Timeout(600.0, connect=5.0)) as http:
        r = http.post(
            f"{state.url}/layerlab/bench",
            headers={"Authorization": f"Bearer {state.token}"},
            json={"n_prompt": settings.n_prompt, "n_gen": settings.n_gen, "reps": settings.reps},
        )
    if r.status_code != 200:
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"the engine answered {r.status_code}"
        raise RuntimeError(message)
    return r.json()


def _wait_released(workers: list[str], sup: EngineSupervisor) -> None:
    """Until every worker of the plan answers a probe again (its engine has let go)."""
    deadline = time.monotonic() + RELEASE_TIMEOUT_S
    for w in workers:
        endpoint = sup.routes.engine_endpoint(w) if sup.routes else w
        while time.monotonic() < deadline:
            if probe(endpoint, timeout=0.5).ok:
                break
            time.sleep(0.1)
