"""Starts, watches and stops the engine process. Shared by the window and `layerlab serve`.

llama.cpp aborts the engine when a worker vanishes and blocks forever when one freezes
(FACTS.md). The supervisor turns both into a state the person can act on: it probes
workers before the load, polls their status endpoints and the engine's progress while
the model is loaded, kills the engine on a frozen worker or a stalled generation, and
names the lost worker so "reload without it" is one call.
"""

from __future__ import annotations

import collections
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import platformdirs

from layerlab.core.cluster.probe import fetch_status, probe
from layerlab.core.endpoint import Endpoint
from layerlab.core.engine import events
from layerlab.core.engine.client import EngineClient
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


class WorkerRoutes(Protocol):
    """How the engine reaches a worker the person knows by another address.

    A paired worker is known by its LAN link address ("10.0.0.5:50050"); llama.cpp reaches it
    through a local forwarder ("127.0.0.1:P"). Plans, states and messages keep the person's
    address; only the plan handed to the engine process names the forwarder
    (core/cluster/head_links.py implements this).
    """

    def engine_endpoint(self, address: str) -> str: ...

    def problem(self, address: str) -> str: ...  # why the link failed, in words; "" if fine

    def label(self, address: str) -> str: ...  # "bench-box (10.0.0.5:50050)"


def engine_log_dir() -> Path:
    return Path(platformdirs.user_log_dir("layerlab"))


class EngineSupervisor:
    def __init__(
        self,
        on_state: Callable[[EngineState], None] | None = None,
        watch: WatchSettings | None = None,
        python: str = sys.executable,
        routes: WorkerRoutes | None = None,
    ):
        self._on_state = on_state or (lambda s: None)
        self.routes = routes  # None: every worker address is an RPC endpoint as it stands
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
        threading.Thread(
            target=self._launch, args=(plan, gen), name="engine-launch", daemon=True
        ).start()

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

    def use_routes(self, routes: WorkerRoutes | None) -> None:
        """Route paired workers through their links from the next load on."""
        self.routes = routes

    def worker_lost(self, address: str, problem: str = "") -> bool:
        """A watcher (the link's heartbeat) saw `address` go: stop the engine now.

        llama.cpp would abort or hang; waiting for that and then probing costs seconds.
        Ignored unless the loading or loaded model uses that worker. Returns whether it acted.
        """
        with self._lock:
            s, gen = self._state, self._generation
        if not isinstance(s, Loading | Ready) or address not in s.plan.workers:
            return False
        cause = f"{problem.rstrip('.')}. The" if problem else "the"
        # No grace: with a worker gone llama.cpp aborts or hangs, it never exits cleanly.
        self._kill_for(
            s.plan,
            gen,
            self._lost(s.plan, [address], f"{cause} model had layers there, so it was unloaded."),
            grace=0.0,
        )
        return True

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

    # -- routes (paired workers reached through a local forwarder) ----------------------
    def _route(self, address: str) -> str:
        return self.routes.engine_endpoint(address) if self.routes else address

    def _label(self, address: str) -> str:
        return self.routes.label(address) if self.routes else address

    def _link_problem(self, address: str) -> str:
        return self.routes.problem(address) if self.routes else ""

    def _launch(self, plan: LoadPlan, gen: int) -> None:
        with_status: list[str] = []  # LayerLab workers; plain rpc-servers have no status port
        try:
            routes = {w: self._route(w) for w in plan.workers}
        except Exception as e:  # a link that cannot be opened (unpaired since, key gone...)
            self._set(Failed(plan, f"Could not open the link to a worker: {e}"), gen)
            return
        for w in plan.workers:
            result = probe(routes[w], timeout=self.watch.probe_timeout_s)
            if not result.ok:
                self._set(Failed(plan, self._link_problem(w) or result.problem, [w]), gen)
                return
            if result.status is not None:
                with_status.append(w)
        engine_plan = _routed(plan, routes)
        back = {ep: w for w, ep in routes.items() if ep != w}
        self._token = secrets.token_urlsafe(32)
        env = dict(
            os.environ, **{events.TOKEN_ENV: self._token, events.PARENT_ENV: str(os.getpid())}
        )
        env.setdefault("PYTHONUNBUFFERED", "1")
        log_dir = engine_log_dir()
        log_dir.mkdir(parents=True, exist_ok=True)
        self._stderr_tail.clear()
        try:
            proc = subprocess.Popen(
                [self._python, "-m", "layerlab.core.engine.host"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
                bufsize=1,
            )
        except OSError as e:
            self._set(Failed(plan, f"Could not start the engine process: {e}"), gen)
            return
        with self._lock:
            if gen != self._generation:  # stopped while we were starting it
                _terminate(proc)
                _close_pipes(proc)
                return
            self._proc = proc
            self._expected_exit = False
        assert proc.stdin and proc.stdout and proc.stderr
        # If it was stopped (and killed) in between, writing fails and the stdout loop ends.
        with contextlib.suppress(OSError):
            proc.stdin.write(engine_plan.to_json())
        with contextlib.suppress(OSError):
            proc.stdin.close()
        threading.Thread(
            target=self._pump_stderr,
            args=(proc, log_dir / "engine.log"),
            name="engine-stderr",
            daemon=True,
        ).start()
        placement: events.Placement | None = None
        failure: events.LoadFailed | None = None
        for line in proc.stdout:
            ev = events.decode(line)
            if isinstance(ev, events.Progress):
                self._set(Loading(plan, ev.fraction, ev.stage), gen)
            elif isinstance(ev, events.Placement):
                placement = _relabelled(ev, back)
            elif isinstance(ev, events.LoadFailed):
                failure = replace(ev, worker=back.get(ev.worker, ev.worker))
            elif (
                isinstance(ev, events.Ready)
                and placement is not None
                and self._set(Ready(plan, ev.url, ev.model, placement, ev.load_s), gen)
            ):
                threading.Thread(
                    target=self._watch,
                    args=(plan, gen, ev.url, with_status, routes),
                    name="engine-watch",
                    daemon=True,
                ).start()
        proc.stdout.close()
        code = proc.wait()
        with self._lock:
            if gen != self._generation or self._expected_exit:
                return
            self._proc = None
        if failure is not None:
            self._set(Failed(plan, failure.reason, [failure.worker] if failure.worker else []), gen)
            return
        self._set(self._diagnose(plan, code, routes), gen)

    def _pump_stderr(self, proc: subprocess.Popen, path: Path) -> None:
        assert proc.stderr
        with open(path, "a", encoding="utf-8") as log:
            for line in proc.stderr:
                self._stderr_tail.append(line.rstrip("\n"))
                log.write(line)
            log.flush()
        proc.stderr.close()

    def _diagnose(self, plan: LoadPlan, code: int, routes: dict[str, str] | None = None) -> Failed:
        """The engine ended on its own: find out whether a worker took it down."""
        routes = routes or {}
        # A killed worker refuses at once; ask every worker in parallel, refusals first.
        lost = [w for w in plan.workers if _refused(routes.get(w, w))]
        if not lost and plan.workers:
            with ThreadPoolExecutor(len(plan.workers)) as pool:
                answers = list(
                    pool.map(lambda w: probe(routes.get(w, w), timeout=1.0), plan.workers)
                )
            lost = [w for w, r in zip(plan.workers, answers, strict=True) if not r.ok]
        if lost:
            return self._lost(plan, lost, "the model had layers there, so it was unloaded.")
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        tail = " | ".join(x for x in list(self._stderr_tail)[-3:] if x.strip())
        return Failed(plan, f"The engine stopped unexpectedly ({how}). {tail}".strip())

    def _watch(
        self,
        plan: LoadPlan,
        gen: int,
        url: str,
        with_status: list[str],
        routes: dict[str, str] | None = None,
    ) -> None:
        """While loaded: poll every worker's status endpoint and the engine's progress."""
        client = EngineClient(url, self._token)
        routes = routes or {}
        watched = {w: time.monotonic() for w in with_status}
        while gen == self._generation:
            time.sleep(self.watch.interval_s)
            for w in list(watched):
                ep = routes.get(w, w)
                answer = fetch_status(Endpoint.parse(ep), min(1.0, self.watch.worker_silence_s))
                if answer is not None:
                    watched[w] = time.monotonic()
                elif time.monotonic() - watched[w] > self.watch.worker_silence_s or _refused(ep):
                    self._kill_for(
                        plan,
                        gen,
                        self._lost(
                            plan,
                            [w],
                            "it stopped answering (frozen, switched off or unplugged). "
                            "The model was unloaded.",
                        ),
                    )
                    return
            try:
                st = client.status()
            except Exception:  # EngineUnavailable, EngineRefused: _launch reports its exit
                continue
            stalled = st.get("since_progress_s", 0) > self.watch.stall_s
            if st.get("state") == "generating" and stalled:
                self._kill_for(
                    plan,
                    gen,
                    Failed(
                        plan,
                        f"The answer made no progress for {self.watch.stall_s:g} s; the engine "
                        "was stopped. Your conversation is kept.",
                    ),
                )
                return

    def _lost(self, plan: LoadPlan, workers: list[str], what_happened: str) -> Failed:
        """The one way a lost worker is told: who, what happened, and what to do."""
        names = ", ".join(self._label(w) for w in workers)
        return Failed(
            plan,
            f"Lost worker {names}: {what_happened} Your conversation is kept. "
            "Reload without it to go on.",
            list(workers),
        )

    def _kill_for(self, plan: LoadPlan, gen: int, failure: Failed, grace: float = 0.5) -> None:
        with self._lock:
            if gen != self._generation:
                return
            self._generation += 1
            proc, self._proc = self._proc, None
            gen = self._generation
        if proc is not None:
            _terminate(proc, grace=grace)
        self._set(failure, gen)


def _routed(plan: LoadPlan, routes: dict[str, str]) -> LoadPlan:
    """The plan as the engine process gets it: each worker at the endpoint llama.cpp dials."""
    if all(ep == w for w, ep in routes.items()):
        return plan
    engine_plan = LoadPlan.from_dict(plan.to_dict())
    engine_plan.devices = [
        replace(d, endpoint=routes.get(d.endpoint, d.endpoint)) if d.kind == "rpc" else d
        for d in plan.devices
    ]
    return engine_plan


def _relabelled(placement: events.Placement, back: dict[str, str]) -> events.Placement:
    """Device labels name the person's address, not the local forwarder's."""
    if not back:
        return placement

    def label(text: str) -> str:
        for ep, address in back.items():
            if text == f"RPC {ep}" or text.startswith(f"RPC {ep} "):
                return f"RPC {address}" + text[len(f"RPC {ep}") :]
        return text

    return events.Placement(
        [label(d) for d in placement.layer_devices],
        [replace(a, device=label(a.device)) for a in placement.allocations],
    )


def _refused(endpoint: str) -> bool:
    """A dead worker refuses at once; a frozen one accepts and stays silent."""
    ep = Endpoint.parse(endpoint)
    try:
        with socket.create_connection((ep.host, ep.port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def _close_pipes(proc: subprocess.Popen) -> None:
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def _terminate(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    if grace <= 0:
        proc.kill()
        proc.wait(timeout=5)
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()  # blocked inside llama.cpp (a frozen worker): SIGTERM cannot get through
        proc.wait(timeout=5)
