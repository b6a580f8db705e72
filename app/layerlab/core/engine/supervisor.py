"""Starts, watches and stops the engine process. Shared by the window and `layerlab serve`.

llama.cpp aborts the engine when a worker vanishes and blocks forever when one freezes
(FACTS.md). The supervisor turns both into a state the person can act on: it probes
workers before the load, hears from the worker feed (one poller per worker, shared with
the gauges) when one of the plan's workers goes silent or away, asks the engine how it is
while the model is loaded, kills the engine on a lost worker, a frozen engine or a stalled
generation, and names the lost worker so "reload without it" is one call. Every failure
carries a `cause` from a closed set; the head decides what to do about it (the supervisor
never reloads by itself).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol, get_args

import platformdirs

from layerlab.core.cluster.status import WorkerStatus, read_plain_status
from layerlab.core.cluster.worker_check import probe
from layerlab.core.cluster.worker_feed import WorkerFeed, WorkerReading
from layerlab.core.endpoint import Endpoint
from layerlab.core.engine import events
from layerlab.core.engine.client import EngineClient, EngineRefused
from layerlab.core.gguf import GGUFError, check_model_file
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
    # What llama.cpp really runs with (LoadPlan's names) and how it differs from the plan,
    # in words (engine/loaded.py); a difference that matters refuses the load instead.
    loaded: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    token: str = field(default="", repr=False)  # this launch's API key, never another's

    @property
    def placement_text(self) -> str:
        return describe_ranges(self.placement.layer_devices)


# Why a load or a loaded model failed; the head's reload policy matches on it.
FailCause = Literal[
    "worker_lost",  # a worker of the plan went (killed, frozen, unreachable, refused the probe)
    "engine_died",  # the engine process ended by itself (killed, OOM, a llama.cpp abort)
    "engine_frozen",  # the engine stopped answering (SIGSTOP, stuck inside llama.cpp)
    "load_failed",  # llama.cpp could not load the model as planned
    "stalled",  # an answer made no progress for WatchSettings.stall_s
    "start_failed",  # the engine process could not be started
    "link",  # the link to a paired worker could not be opened
]
FAIL_CAUSES: tuple[str, ...] = get_args(FailCause)


@dataclass(frozen=True)
class Failed:
    plan: LoadPlan | None
    message: str
    lost_workers: list[str] = field(default_factory=list)
    cause: FailCause = "engine_died"

    def __post_init__(self) -> None:
        if self.cause not in FAIL_CAUSES:
            raise ValueError(f"unknown failure cause {self.cause!r}")

    @property
    def can_reload_without(self) -> bool:
        return bool(self.plan and self.lost_workers)


EngineState = Stopped | Loading | Ready | Failed


@dataclass
class WatchSettings:
    interval_s: float = 0.5  # how often workers and the engine are asked how they are
    worker_silence_s: float = 3.0  # a worker's status endpoint silent this long: frozen
    stall_s: float = 30.0  # generating with no new token this long: stalled
    # ... before the first decode since the load has finished (it builds the device's
    # kernels: the bundle's self-test on Mesa's CPU Vulkan took 29 s, and was stopped)
    first_stall_s: float = 300.0
    probe_timeout_s: float = 2.0
    # The engine's status route answers in milliseconds, generating or not (the event loop
    # never waits on llama.cpp); no answer for this long from the last one: frozen.
    engine_silence_s: float = 5.0
    engine_timeout_s: float = 1.0  # one status call's limit


def stall_limit(status: dict, watch: WatchSettings) -> float:
    """How long an answer may go without progress, from the engine's status: longer while
    the first decode since the load runs (it builds the device's kernels)."""
    return watch.stall_s if status.get("warm", True) else max(watch.stall_s, watch.first_stall_s)


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


LOG_MAX_BYTES = 5 * 1024 * 1024  # engine.log is rotated at this size ...
LOG_FILES = 3  # ... keeping engine.log, engine.log.1 and engine.log.2


class RotatingLog:
    """An append-only text log that never grows past `files` x `max_bytes`: the engine logs
    every llama.cpp line, DEBUG included, and one log grew to 14 MB."""

    def __init__(self, path: Path, max_bytes: int = LOG_MAX_BYTES, files: int = LOG_FILES):
        self.path, self.max_bytes, self.files = path, max_bytes, files
        self._file = None
        self._size = 0

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        if self._file is None or (self._size and self._size + len(data) > self.max_bytes):
            self._open(rotate=self._file is not None or self._too_big())
        assert self._file is not None
        self._file.write(data)
        self._size += len(data)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _too_big(self) -> bool:
        try:
            return self.path.stat().st_size >= self.max_bytes
        except OSError:
            return False

    def _open(self, rotate: bool) -> None:
        self.close()
        if rotate:
            for i in range(self.files - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                newer = self.path.with_name(f"{self.path.name}.{i - 1}") if i > 1 else self.path
                if newer.exists():
                    os.replace(newer, older)
        self._file = open(self.path, "ab")  # noqa: SIM115 (closed in close())
        self._size = self._file.tell()


class EngineSupervisor:
    def __init__(
        self,
        on_state: Callable[[EngineState], None] | None = None,
        watch: WatchSettings | None = None,
        python: str = sys.executable,
        routes: WorkerRoutes | None = None,
        feed: WorkerFeed | None = None,
        log_dir: Path | None = None,
    ):
        self._on_state = on_state or (lambda s: None)
        self.routes = routes  # None: every worker address is an RPC endpoint as it stands
        self.watch = watch or WatchSettings()
        self._python = python
        self._log_dir = log_dir
        self._lock = threading.RLock()
        self._proc: subprocess.Popen | None = None
        self._generation = 0  # bumps on every start/stop so stale threads stand down
        self._state: EngineState = Stopped()
        self._expected_exit = False
        # One poller per worker, shared with the gauges when the head hands its feed in;
        # otherwise our own, closed by close().
        self._own_feed = feed is None
        self.feed = feed or WorkerFeed(
            read=self._read_status,
            interval_s=self.watch.interval_s,
            silence_s=self.watch.worker_silence_s,
        )
        self._watching: set[str] = set()  # workers we asked the feed to watch (and will unwatch)
        # The launch whose workers all passed their probe. Until then the probe speaks for
        # them: its words ("Nothing is listening on ...") say more than the feed's "gone".
        self._probed_gen = -1
        self._unsubscribe = self.feed.subscribe(self._on_reading)

    # -- public -------------------------------------------------------------------------
    @property
    def state(self) -> EngineState:
        return self._state

    def client(self) -> EngineClient | None:
        s = self._state
        return EngineClient(s.url, s.token) if isinstance(s, Ready) else None

    @property
    def token(self) -> str:
        """The loaded engine's API key ("" unless Ready): each launch has its own."""
        s = self._state
        return s.token if isinstance(s, Ready) else ""

    def start(self, plan: LoadPlan) -> None:
        """Begin loading (returns at once). A running engine is stopped first."""
        plan.validate()
        self.stop(quiet=True)
        with self._lock:
            self._generation += 1
            gen = self._generation
        self._watch_workers(plan.workers)
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
        self._watch_workers([])
        if not quiet:
            self._set(Stopped("Model unloaded."), self._generation)

    def close(self) -> None:
        """Stop the engine and stop listening to the feed (closing it if it is our own)."""
        self.stop(quiet=True)
        self._unsubscribe()
        if self._own_feed:
            self.feed.close()

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
        why = f"{problem.rstrip('.')}. The" if problem else "the"
        # No grace: with a worker gone llama.cpp aborts or hangs, it never exits cleanly.
        self._kill_for(
            s.plan,
            gen,
            self._lost(s.plan, [address], f"{why} model had layers there, so it was unloaded."),
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

    # -- the worker feed -----------------------------------------------------------------
    def _read_status(self, address: str, timeout: float) -> WorkerStatus | None:
        """Our own feed's reader: a paired worker's status over its link when the routes can
        read it, else plain HTTP at the endpoint llama.cpp dials."""
        routes = self.routes
        read = getattr(routes, "read_status", None)
        if read is not None:
            return read(address, timeout)
        return read_plain_status(self._route(address), timeout)

    def _watch_workers(self, workers: list[str]) -> None:
        """Have the feed watch these workers; stop watching those we added for earlier plans
        (a worker the head watches stays watched: the head added it, not us)."""
        with self._lock:
            already = set(self.feed.watched())
            add = [w for w in workers if w not in already]
            drop = self._watching - set(workers)
            self._watching = (self._watching - drop) | set(add)
        for w in drop:
            self.feed.unwatch(w)
        for w in add:
            self.feed.watch(w)

    def _on_reading(self, reading: WorkerReading) -> None:
        """From the feed's poller threads: one of the plan's workers went silent or away."""
        if reading.state not in ("silent", "gone"):
            return
        with self._lock:
            s, probed = self._state, self._probed_gen == self._generation
        if (
            not probed
            or not isinstance(s, Loading | Ready)
            or reading.address not in s.plan.workers
        ):
            return
        # Off the poller's thread: killing the engine waits for it to end.
        threading.Thread(
            target=self.worker_lost,
            args=(reading.address, "it stopped answering (frozen, switched off or unplugged)"),
            name="engine-worker-lost",
            daemon=True,
        ).start()

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
        # The same check the layer map and the library make: a damaged or incomplete file is
        # said in words before llama.cpp reads it (it would fail later, or worse, load it).
        try:
            check_model_file(plan.model_path)
        except (GGUFError, OSError) as e:
            name = Path(plan.model_path).name
            self._set(Failed(plan, f"{name} cannot be loaded: {e}", cause="load_failed"), gen)
            return
        try:
            routes = {w: self._route(w) for w in plan.workers}
        except Exception as e:  # a link that cannot be opened (unpaired since, key gone...)
            self._set(Failed(plan, f"Could not open the link to a worker: {e}", cause="link"), gen)
            return
        for w in plan.workers:
            result = probe(routes[w], timeout=self.watch.probe_timeout_s)
            if not result.ok:
                problem = self._link_problem(w) or result.problem
                self._set(Failed(plan, problem, [w], cause="worker_lost"), gen)
                return
        with self._lock:
            if gen != self._generation:  # overtaken while probing: start no engine for nothing
                return
            self._probed_gen = gen
        engine_plan = _routed(plan, routes)
        back = {ep: w for w, ep in routes.items() if ep != w}
        # This launch's own key: a stale launch (still probing a slow worker when the person
        # started another) must never hand its key to the engine that won.
        token = secrets.token_urlsafe(32)
        env = dict(os.environ, **{events.TOKEN_ENV: token, events.PARENT_ENV: str(os.getpid())})
        env.setdefault("PYTHONUNBUFFERED", "1")
        log_dir = self._log_dir or engine_log_dir()
        log_dir.mkdir(parents=True, exist_ok=True)
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
            failed = Failed(plan, f"Could not start the engine process: {e}", cause="start_failed")
            self._set(failed, gen)
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
            elif isinstance(ev, events.Ready) and placement is not None:
                ready = Ready(
                    plan, ev.url, ev.model, placement, ev.load_s, ev.loaded, ev.notes, token
                )
                if self._set(ready, gen):
                    threading.Thread(
                        target=self._watch,
                        args=(plan, gen, ev.url, token, proc),
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
            lost = [failure.worker] if failure.worker else []
            cause = "worker_lost" if lost else "load_failed"
            self._set(Failed(plan, failure.reason, lost, cause=cause), gen)
            return
        self._set(self._diagnose(plan, code, routes, log_dir / "engine.log"), gen)

    def _pump_stderr(self, proc: subprocess.Popen, path: Path) -> None:
        assert proc.stderr
        log = RotatingLog(path)
        try:
            for line in proc.stderr:
                log.write(line)
        finally:
            log.close()
            proc.stderr.close()

    def _diagnose(
        self,
        plan: LoadPlan,
        code: int,
        routes: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> Failed:
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
        # In words only: the tail of llama.cpp's log means nothing to the person; the log
        # file is named for whoever wants to look.
        where = f" Details are in the engine log ({log_path})." if log_path else ""
        return Failed(
            plan,
            f"The engine stopped unexpectedly ({how_it_ended(code)}). Your conversation is "
            f"kept; load the model again to go on.{where}",
            cause="engine_died",
        )

    def _watch(
        self, plan: LoadPlan, gen: int, url: str, token: str, proc: subprocess.Popen
    ) -> None:
        """While loaded: ask the engine how it is, with a short timeout.

        A frozen engine (SIGSTOP, or stuck inside llama.cpp holding the GIL) accepts the
        connection and never answers: silence counted from its last answer ends it. An
        engine that answers but makes no progress while generating has stalled. Workers are
        watched by the feed (_on_reading), not here.
        """
        client = EngineClient(url, token)
        w = self.watch
        last_answer = time.monotonic()
        while gen == self._generation:
            time.sleep(w.interval_s)
            if proc.poll() is not None:
                return  # it ended: _launch says why
            try:
                st = client.status(timeout=w.engine_timeout_s)
            except EngineRefused:  # it answered, if not with a status
                last_answer = time.monotonic()
                continue
            except Exception:  # EngineUnavailable: silent (or just ended: checked above)
                silent = time.monotonic() - last_answer
                if silent > w.engine_silence_s and proc.poll() is None:
                    self._kill_for(
                        plan,
                        gen,
                        Failed(
                            plan,
                            f"The engine stopped answering for {silent:.0f} s (frozen, or stuck "
                            "inside llama.cpp), so it was stopped. Your conversation is kept; "
                            "load the model again to go on.",
                            cause="engine_frozen",
                        ),
                        grace=0.0,  # a frozen process cannot act on SIGTERM
                    )
                    return
                continue
            last_answer = time.monotonic()
            limit = stall_limit(st, w)
            stalled = st.get("since_progress_s", 0) > limit
            if st.get("state") == "generating" and stalled:
                self._kill_for(
                    plan,
                    gen,
                    Failed(
                        plan,
                        f"The answer made no progress for {limit:g} s; the engine "
                        "was stopped. Your conversation is kept.",
                        cause="stalled",
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
            cause="worker_lost",
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


# How the engine's end reads when it was not asked to stop. POSIX: a negative code is the
# signal that killed it. Windows has no signals: a crash ends the process with the NTSTATUS
# of the exception (GetExitCodeProcess reports it unsigned, 3221225477; some tools print
# it as a signed int32, -1073741819), and abort() without fail-fast exits with 3.
_ABORTED = "llama.cpp hit an error it could not recover from and aborted"
_CRASHED = "it crashed inside llama.cpp"
_SIGNAL_WORDS = {  # by name: SIGKILL and SIGBUS do not exist in Python on Windows
    "SIGKILL": "perhaps the system ran out of memory, or something ended it",
    "SIGABRT": _ABORTED,
    "SIGSEGV": _CRASHED,
    "SIGBUS": f"{_CRASHED} (the model file may have changed on disk)",
    "SIGILL": "llama.cpp used an instruction this processor does not have",
    "SIGTERM": "something other than LayerLab asked it to stop",
}
_WINDOWS_ABORT = 3
_WINDOWS_CRASHES = {  # NTSTATUS: (what Windows calls it, what it means here)
    0xC0000005: ("an access violation", _CRASHED),
    0xC00000FD: ("a stack overflow", _CRASHED),
    0xC0000374: ("heap corruption", _CRASHED),
    0xC0000409: ("a fail-fast exit", _ABORTED),  # abort() with the UCRT, and buffer overruns
    0xC000001D: (
        "an illegal instruction",
        "llama.cpp used an instruction this processor does not have (a CPU variant built "
        "for a newer processor)",
    ),
    0xC0000135: (
        "a DLL not found",
        "a library llama.cpp needs is missing: reinstall LayerLab, and the NVIDIA CUDA "
        "component if you chose it",
    ),
    0xC0000142: (
        "a DLL that failed to start",
        "a library llama.cpp needs could not start: reinstall LayerLab or update the GPU driver",
    ),
    0xC0000017: ("no memory", "the system ran out of memory"),
    0xC000013A: ("Ctrl+C", "something other than LayerLab asked it to stop"),
}


def how_it_ended(code: int, windows: bool = os.name == "nt") -> str:
    """An engine's exit status in words (`windows`: read it as Windows reports it)."""
    if windows:
        status = code & 0xFFFFFFFF  # the same whether Windows gave it signed or unsigned
        if status in _WINDOWS_CRASHES:
            what, why = _WINDOWS_CRASHES[status]
            return f"Windows error 0x{status:08X}, {what}: {why}"
        if status == _WINDOWS_ABORT:
            return f"exit code 3: {_ABORTED}"
        if 0xC0000000 <= status < 0xD0000000:  # an error status Windows raised, not an exit
            return f"it crashed with Windows error 0x{status:08X}"
        return f"it exited with code {code}"
    if code >= 0:
        return f"it exited with code {code}"
    sig = -code
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = ""
    why = _SIGNAL_WORDS.get(name, "")
    if why:
        return f"killed by signal {sig}: {why}"
    return f"killed by signal {sig}" + (f" ({name})" if name else "")


def _routed(plan: LoadPlan, routes: dict[str, str]) -> LoadPlan:
    """The plan as the engine process gets it: each worker at the endpoint llama.cpp dials."""
    if all(ep == w for w, ep in routes.items()):
        return plan
    engine_plan = LoadPlan.from_dict(plan.to_dict())
    engine_plan.devices = [
        d.model_copy(update={"endpoint": routes.get(d.endpoint, d.endpoint)})
        if d.kind == "rpc"
        else d
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
