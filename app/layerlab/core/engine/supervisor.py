"""Starts, watches and stops the engine process. Shared by the window and `layerlab serve`.

llama.cpp aborts the engine when a worker vanishes and blocks forever when one freezes
(FACTS.md). The supervisor turns both into a state the person can act on: it probes
workers before the load, polls their status endpoints and the engine's progress while
the model is loaded, kills the engine on a frozen worker or a stalled generation, and
names the lost worker so "reload without it" is one call.
"""

from __future__ import annotations

import collections
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from layerlab.core.cluster.probe import fetch_status, probe
from layerlab.core.endpoint import Endpoint
from layerlab.core.engine import events
from layerlab.core.engine.client import EngineClient, EngineUnavailable
from layerlab.core.load_plan import LoadPlan, describe_ranges


# --- the states a view matches on ----------------------------------------------------------
@dataclass(frozen=True)
class Stopped:
    message: str = ""


@dataclass(frozen=True)
class Loading:
    plan: LoadPlan
    fraction: float = 0.0
    stage: str = "starting"


@dataclass(frozen=True)
class Ready:
    plan: LoadPlan
    url: str
    model: str
    placement: events.Placement
    load_s: float = 0.0

    @property
    def placement_text(self) -> str:
        return describe_ranges(self.placement.layer_devices)


@dataclass(frozen=True)
class Failed:
    plan: LoadPlan | None
    message: str
    lost_workers: list[str] = field(default_factory=list)

    @property
    def can_reload_without(self) -> bool:
        return bool(self.plan and self.lost_workers)


EngineState = Stopped | Loading | Ready | Failed


@dataclass
class WatchSettings:
    interval_s: float = 0.5  # how often workers and the engine are asked how they are
    worker_silence_s: float = 3.0  # a worker's status endpoint silent this long: frozen
    stall_s: float = 30.0  # generating with no new token this long: stalled
    probe_timeout_s: float = 2.0


def engine_log_dir() -> Path:
    return Path(platformdirs.user_log_dir("layerlab"))


class EngineSupervisor:
    def __init__(self, on_state: Callable[[EngineState], None] | None = None,
                 watch: WatchSettings | None = None, python: str = sys.executable):
        self._on_state = on_state or (lambda s: None)
        self.watch = watch or WatchSettings()
        self._python = python
        self._lock = threading.RLock()
        self._proc: subprocess.Popen | None = None
        self._token = ""
        self._generation = 0  # bumps on every start/stop so stale threads stand down
        self._state: EngineState = Stopped()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=60)
        self._expected_exit = False

    # -- public -------------------------------------------------------------------------
    @property
    def state(self) -> EngineState:
        return self._state

    def client(self) -> EngineClient | None:
        s = self._state
        return EngineClient(s.url, self._token) if isinstance(s, Ready) else None

    @property
    def token(self) -> str:
        return self._token

    def start(self, plan: LoadPlan) -> None:
        """Begin loading (returns at once). A running engine is stopped first."""
        plan.validate()
        self.stop(quiet=True)
        with self._lock:
            self._generation += 1
            gen = self._generation
        self._set(Loading(plan, 0.0, "checking workers"), gen)
        threading.Thread(target=self._launch, args=(plan, gen), name="engine-launch",
                         daemon=True).start()

    def stop(self, quiet: bool = False) -> None:
        """Stop the engine and wait for it to end (at most ~5 s)."""
        with self._lock:
            self._generation += 1
            proc, self._proc = self._proc, None
            self._expected_exit = True
        if proc is not None:
            _terminate(proc)
        if not quiet:
            self._set(Stopped("Model unloaded."), self._generation)

    def reload_without_lost(self) -> None:
        s = self._state
        if not (isinstance(s, Failed) and s.plan and s.lost_workers):
            raise RuntimeError("nothing to reload without")
        plan = s.plan
        for w in s.lost_workers:
            plan = plan.without_worker(w)
        self.start(plan)

    def wait_for(self, kinds: tuple[type, ...], timeout: float) -> EngineState:
        """Block until the state is one of `kinds` (for the CLI and tests, not the GUI)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if isinstance(self._state, kinds):
                return self._state
            time.sleep(0.02)
        raise TimeoutError(f"engine still {type(self._state).__name__} after {timeout:g} s")

    # -- internals ----------------------------------------------------------------------
    def _set(self, state: EngineState, gen: int) -> bool:
        with self._lock:
            if gen != self._generation:
                return False
            self._state = state
        self._on_state(state)
        return True

    def _launch(self, plan: LoadPlan, gen: int) -> None:
        with_status: list[str] = []  # LayerLab workers; plain rpc-servers have no status port
        for w in plan.workers:
            result = probe(w, timeout=self.watch.probe_timeout_s)
            if not result.ok:
                self._set(Failed(plan, result.problem, [w]), gen)
                return
            if result.status is not None:
                with_status.append(w)
        self._token = secrets.token_urlsafe(32)
        env = dict(os.environ, **{events.TOKEN_ENV: self._token})
        env.setdefault("PYTHONUNBUFFERED", "1")
        log_dir = engine_log_dir()
        log_dir.mkdir(parents=True, exist_ok=True)
        self._stderr_tail.clear()
        try:
            proc = subprocess.Popen(
                [self._python, "-m", "layerlab.core.engine.host"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, text=True, bufsize=1,
            )
        except OSError as e:
            self._set(Failed(plan, f"Could not start the engine process: {e}"), gen)
            return
        with self._lock:
            if gen != self._generation:
                _terminate(proc)
                return
            self._proc = proc
            self._expected_exit = False
        assert proc.stdin and proc.stdout and proc.stderr
        proc.stdin.write(plan.to_json())
        proc.stdin.close()
        threading.Thread(target=self._pump_stderr, args=(proc, log_dir / "engine.log"),
                         name="engine-stderr", daemon=True).start()
        placement: events.Placement | None = None
        failure: events.LoadFailed | None = None
        for line in proc.stdout:
            ev = events.decode(line)
            if isinstance(ev, events.Progress):
                self._set(Loading(plan, ev.fraction, ev.stage), gen)
            elif isinstance(ev, events.Placement):
                placement = ev
            elif isinstance(ev, events.LoadFailed):
                failure = ev
            elif (isinstance(ev, events.Ready) and placement is not None
                  and self._set(Ready(plan, ev.url, ev.model, placement, ev.load_s), gen)):
                threading.Thread(target=self._watch, args=(plan, gen, ev.url, with_status),
                                 name="engine-watch", daemon=True).start()
        proc.stdout.close()
        code = proc.wait()
        with self._lock:
            if gen != self._generation or self._expected_exit:
                return
            self._proc = None
        if failure is not None:
            self._set(Failed(plan, failure.reason, [failure.worker] if failure.worker else []),
                      gen)
            return
        self._set(self._diagnose(plan, code), gen)

    def _pump_stderr(self, proc: subprocess.Popen, path: Path) -> None:
        assert proc.stderr
        with open(path, "a", encoding="utf-8") as log:
            for line in proc.stderr:
                self._stderr_tail.append(line.rstrip("\n"))
                log.write(line)
            log.flush()
        proc.stderr.close()

    def _diagnose(self, plan: LoadPlan, code: int) -> Failed:
        """The engine ended on its own: find out whether a worker took it down."""
        from concurrent.futures import ThreadPoolExecutor

        # A killed worker refuses at once; ask every worker in parallel, refusals first.
        lost = [w for w in plan.workers if _refused(w)]
        if not lost and plan.workers:
            with ThreadPoolExecutor(len(plan.workers)) as pool:
                answers = list(pool.map(lambda w: probe(w, timeout=1.0), plan.workers))
            lost = [w for w, r in zip(plan.workers, answers, strict=True) if not r.ok]
        if lost:
            names = ", ".join(lost)
            return Failed(plan, f"Lost worker {names}: the model had layers there, so it was "
                                f"unloaded. Your conversation is kept. Reload without it to go on.",
                          lost)
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        tail = " | ".join(x for x in list(self._stderr_tail)[-3:] if x.strip())
        return Failed(plan, f"The engine stopped unexpectedly ({how}). {tail}".strip())

    def _watch(self, plan: LoadPlan, gen: int, url: str, with_status: list[str]) -> None:
        """While loaded: poll every worker's status endpoint and the engine's progress."""
        client = EngineClient(url, self._token)
        watched = {w: time.monotonic() for w in with_status}
        while gen == self._generation:
            time.sleep(self.watch.interval_s)
            for w in list(watched):
                answer = fetch_status(Endpoint.parse(w), min(1.0, self.watch.worker_silence_s))
                if answer is not None:
                    watched[w] = time.monotonic()
                elif time.monotonic() - watched[w] > self.watch.worker_silence_s or _refused(w):
                    self._kill_for(plan, gen, Failed(
                        plan, f"Lost worker {w}: it stopped answering (frozen, switched off or "
                              "unplugged). The model was unloaded; your conversation is kept. "
                              "Reload without it to go on.", [w]))
                    return
            try:
                st = client.status()
            except EngineUnavailable:
                continue  # the engine's own exit is reported by _launch
            except Exception:
                continue
            stalled = st.get("since_progress_s", 0) > self.watch.stall_s
            if st.get("state") == "generating" and stalled:
                self._kill_for(plan, gen, Failed(
                    plan, f"The answer made no progress for {self.watch.stall_s:g} s; the engine "
                          "was stopped. Your conversation is kept."))
                return

    def _kill_for(self, plan: LoadPlan, gen: int, failure: Failed) -> None:
        with self._lock:
            if gen != self._generation:
                return
            self._generation += 1
            proc, self._proc = self._proc, None
            gen = self._generation
        if proc is not None:
            _terminate(proc, grace=0.5)
        self._set(failure, gen)


def _refused(endpoint: str) -> bool:
    """A dead worker refuses at once; a frozen one accepts and stays silent."""
    import socket

    ep = Endpoint.parse(endpoint)
    try:
        with socket.create_connection((ep.host, ep.port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def _terminate(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()  # blocked inside llama.cpp (a frozen worker): SIGTERM cannot get through
        proc.wait(timeout=5)
