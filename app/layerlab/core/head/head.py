"""The head: the machine the person sits at, as one Qt-free object.

It owns, for one head: the engine supervisor, the links to paired workers, the person's saved
workers with their latest probe answers, LAN discovery, the feed that polls every worker once
(for the watchdog and the gauges alike), and the reload policy. The window is a set of views
on it (through ui/head_bridge.py), `layerlab serve` is an HTTP front on it (core/serve.py), and
the CLI uses it directly. A rule about workers, plans or reloads lives here, never in a widget.

Everything the head does that can take longer than a moment (stopping an engine, probing,
pairing's follow-ups, timed reloads) runs on its own threads: a probe pool and one serial lane,
so a slow worker or an engine that takes 10 s to stop never blocks a caller. Views subscribe
with `subscribe(callback)` and get the small typed events of core/head/events.py, from those
threads.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from layerlab.core.api_front import ApiFront
from layerlab.core.bench.after_load import measure_after_load
from layerlab.core.bench.runner import BenchRunner
from layerlab.core.chat.service import ChatService
from layerlab.core.cluster.discovery import DiscoveredWorker
from layerlab.core.cluster.head_links import HeadLinks
from layerlab.core.cluster.identity import Peer
from layerlab.core.cluster.link import LINK_PROTOCOL
from layerlab.core.cluster.worker_check import ProbeResult
from layerlab.core.cluster.worker_feed import WorkerFeed, WorkerReading
from layerlab.core.endpoint import Endpoint
from layerlab.core.engine.client import EngineClient
from layerlab.core.engine.supervisor import (
    EngineState,
    EngineSupervisor,
    Failed,
    Loading,
    Ready,
    WatchSettings,
)
from layerlab.core.head.events import (
    EngineChanged,
    FoundChanged,
    HeadEvent,
    Notice,
    WorkerBack,
    WorkersChanged,
    WorkerUpdated,
)
from layerlab.core.head.lane import SerialLane
from layerlab.core.head.reload_policy import (
    GiveUp,
    Offer,
    ReloadPolicy,
    ReloadWithout,
    RetryIn,
)
from layerlab.core.hub.hub import ModelHub
from layerlab.core.load_plan import LoadPlan
from layerlab.core.planner.calibration import with_measured_threads
from layerlab.core.planner.devices import PlanDevice
from layerlab.core.planner.inputs import enabled_worker_devices
from layerlab.core.settings import SavedWorker, Settings
from layerlab.core.subscribers import Subscribers

RETURN_CHECK_S = 2.0  # how often a worker the model lost is asked whether it is back
STEADY_ANSWERS = 3  # that many answers in a row (over ~4 s) and it counts as back


@dataclass
class Incident:
    """Something that happened to the model, kept for /health and the person's log."""

    time: float
    message: str
    lost_workers: list[str] = field(default_factory=list)
    cause: str = ""


@dataclass(frozen=True)
class FoundRow:
    """A worker announced on the LAN, not yet in the person's list, and what can be done."""

    worker: DiscoveredWorker
    state: str  # "not paired · Pair…", "paired · Add", or why it cannot be used


class Head:
    """One head. Thread-safe; callbacks and events come from the head's threads."""

    def __init__(
        self,
        settings: Settings | None = None,
        settings_path: Path | None = None,
        *,
        persist: bool = True,
        state_dir: Path | None = None,
        links: HeadLinks | None = None,
        watch: WatchSettings | None = None,
        automatic: bool | None = None,
        use_returning: bool | None = None,
        python: str = sys.executable,
        return_check_s: float = RETURN_CHECK_S,
        log: Callable[[str], None] | None = None,
    ):
        self.settings = settings if settings is not None else Settings()
        self._settings_path = settings_path
        self._persist = persist
        self._log = log or (lambda message: None)
        self._lock = threading.RLock()
        self._subscribers: Subscribers[HeadEvent] = Subscribers()
        self.results: dict[str, ProbeResult] = {}  # the person's address -> latest probe answer
        # ... and the last answer that was good: a worker serving this head's model answers
        # "busy", and its devices are still the ones to plan on
        self.last_good: dict[str, ProbeResult] = {}
        self.found: dict[str, DiscoveredWorker] = {}
        self.incidents: list[Incident] = []
        self._closed = False
        self._browser = None
        self._browsing = False
        # "use again" offers and the lost workers being watched for a return: address -> answers
        self._left_out: dict[str, int] = {}
        self._offered: set[str] = set()
        self._reading_states: dict[str, str] = {}  # address -> the feed's last state for it
        self._chosen: LoadPlan | None = None  # the plan the person asked for, every worker in it
        self._intent = (
            0  # bumps on each of the person's load/unload: stale timed reloads stand down
        )
        self._return_check_s = return_check_s
        self.use_returning = (
            use_returning if use_returning is not None else self.settings.use_returning_workers
        )
        self.policy = ReloadPolicy(
            automatic if automatic is not None else self.settings.reload_automatically
        )

        self.links = links or HeadLinks(state_dir)
        self.links.on_change = lambda address: self._emit(WorkerUpdated(address))
        watch = watch or WatchSettings()
        self.feed = WorkerFeed(
            read=self.links.read_status,
            interval_s=watch.interval_s,
            silence_s=watch.worker_silence_s,
        )
        self.feed.subscribe(self._on_reading)
        self.supervisor = EngineSupervisor(
            on_state=self._on_engine, watch=watch, python=python, feed=self.feed
        )
        self.links.attach(self.supervisor)  # paired workers load through their links
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="head-probe")
        self._lane = SerialLane("head-lane", lambda e: self._emit(Notice(f"Internal problem: {e}")))
        for w in self.settings.workers:
            if w.enabled:
                self.feed.watch(w.address)
        # models: search, fit badges for this cluster, downloads, the library; touches no
        # network until the person searches or downloads
        self.models = ModelHub.for_head(self)
        # The conversations (the store opens when first used; beside the head's state in tests)
        self.chat = ChatService(
            self.client,
            state_dir / "chats.sqlite3" if state_dir else None,
            engine_state=lambda: self.supervisor.state,
        )
        # The API other apps use (the window's switch); nothing listens until it is turned on
        self.api = ApiFront(self, state_dir=state_dir, log=self._log)
        # The bench: its own engine per configuration, through the same links; never while
        # the person's model holds the machines (a worker serves one head at a time).
        self.bench = BenchRunner(
            lambda: EngineSupervisor(watch=watch, python=python, routes=self.links),
            calibration_path=state_dir / "speed-calibration.json" if state_dir else None,
            model_in_use=lambda: (
                "Unload the model first: the bench needs the machines to itself."
                if isinstance(self.state, Loading | Ready)
                else ""
            ),
        )

    # -- subscribing ------
    def subscribe(self, callback: Callable[[HeadEvent], None]) -> Callable[[], None]:
        """`callback(event)` for every HeadEvent, from the head's threads; returns the call
        that unsubscribes it."""
        return self._subscribers.add(callback)

    def _emit(self, event: HeadEvent) -> None:
        if isinstance(event, Notice):
            self._log(event.text)
        self._subscribers.tell(event)

    # -- the person's workers ------
    def workers(self) -> list[SavedWorker]:
        with self._lock:
            return [w.model_copy() for w in self.settings.workers]

    def enabled_addresses(self) -> list[str]:
        return [w.address for w in self.workers() if w.enabled]

    def add_worker(self, text: str, enabled: bool = True) -> str:
        """Add a worker by what the person typed; returns its address. Raises BadAddress
        (with the words) for a typo, ValueError when it is already in the list."""
        address = str(Endpoint.parse(text))
        with self._lock:
            if address in [w.address for w in self.settings.workers]:
                raise ValueError(f"{address} is already in the list.")
            self.settings.workers.append(SavedWorker(address, enabled))
        if enabled:
            self.feed.watch(address)
        self._workers_changed()
        self.check(address)
        return address

    def remove_worker(self, address: str) -> None:
        with self._lock:
            self.settings.workers = [w for w in self.settings.workers if w.address != address]
            self.results.pop(address, None)
            self._left_out.pop(address, None)
            self._offered.discard(address)
        self.feed.unwatch(address)
        self._pool.submit(self.links.close, address)  # its forwarder is no longer used
        self._workers_changed()

    def set_enabled(self, address: str, enabled: bool) -> None:
        with self._lock:
            changed = False
            for w in self.settings.workers:
                if w.address == address and w.enabled != enabled:
                    w.enabled, changed = enabled, True
        if not changed:
            return
        if enabled:
            self.feed.watch(address)
        elif address not in self._in_use():
            self.feed.unwatch(address)
        self._workers_changed()

    def _workers_changed(self) -> None:
        self.save_settings()
        self._emit(WorkersChanged())

    def check(self, address: str, reopen: bool = False) -> None:
        """Probe one worker off the caller's thread; WorkerUpdated when its answer is in."""

        def job() -> None:
            try:
                if reopen:  # re-paired: the old link pinned the old key
                    self.links.close(address)
                result = self.links.probe(address)
            except Exception as e:  # the row must never stay at "asking…"
                result = ProbeResult(Endpoint.parse(address), False, str(e), "unreachable")
            if self._closed:
                return
            with self._lock:
                self.results[address] = result
                if result.ok:
                    self.last_good[address] = result
            self._emit(WorkerUpdated(address))

        with self._lock:
            self.results.pop(address, None)
        if not self._closed:
            self._pool.submit(job)

    def check_all(self) -> None:
        for w in self.workers():
            self.check(w.address)

    def worker_devices(self) -> list[PlanDevice]:
        """The enabled workers' devices to plan on, in the person's order."""
        with self._lock:
            results, last_good = dict(self.results), dict(self.last_good)
        return enabled_worker_devices(self.enabled_addresses(), results, last_good)

    def is_paired(self, address: str) -> bool:
        return self.links.is_paired(address)

    def label(self, address: str) -> str:
        """'bench-box (192.168.1.20:50050)' for a paired worker, else the address."""
        return self.links.label(address)

    def reading(self, address: str) -> WorkerReading | None:
        return self.feed.reading(address)

    def paired_with(self, peer: Peer) -> None:
        """Pairing (the dialog) succeeded: the worker joins the list, or is asked again."""
        with self._lock:
            known = peer.address in [w.address for w in self.settings.workers]
        if not known:
            self.add_worker(peer.address)
        else:
            self.check(peer.address, reopen=True)
        self._emit(FoundChanged(list(self.found.values())))

    # -- found on the LAN ------
    def start_discovery(self, interfaces: list[str] | None = None) -> None:
        """Browse the LAN for sharing workers (once; zeroconf starts off the caller's thread).
        Nothing is sent to the network before this is called."""
        with self._lock:
            if self._browsing or self._closed:
                return
            self._browsing = True

        def start() -> None:
            from layerlab.core.cluster.discovery import WorkerBrowser

            def seen(workers: list[DiscoveredWorker]) -> None:
                with self._lock:
                    self.found = {str(w.address): w for w in workers}
                self._emit(FoundChanged(list(workers)))

            try:
                browser = WorkerBrowser(seen, interfaces)
            except OSError as e:
                self._emit(FoundChanged([], f"Cannot look for workers: {e}"))
                return
            if self._closed:
                browser.close()
            else:
                self._browser = browser

        self._pool.submit(start)

    @property
    def browsing(self) -> bool:
        return self._browsing

    def found_rows(self) -> list[FoundRow]:
        """Found workers that are not in the list yet, each with what can be done."""
        in_list = {w.address for w in self.workers()}
        rows = []
        with self._lock:
            found = dict(self.found)
        for address, w in found.items():
            if address in in_list:
                continue
            if w.link_protocol != LINK_PROTOCOL:
                state = f"runs LayerLab {w.layerlab or '?'} with link protocol {w.link_protocol}"
            elif self.links.is_paired(address):
                state = "paired · Add"
            else:
                state = "not paired · Pair…"
            rows.append(FoundRow(w, state))
        return rows

    # -- the model ------
    @property
    def state(self) -> EngineState:
        return self.supervisor.state

    def client(self) -> EngineClient | None:
        return self.supervisor.client()

    def load(self, plan: LoadPlan) -> None:
        """Load `plan` (returns at once). The plan is what loads, field for field."""
        plan.validate()
        with self._lock:
            self._intent += 1
            self._chosen = plan
            self._left_out.clear()
            self._offered.clear()
            if plan.n_ctx and plan.n_ctx != self.settings.n_ctx:
                self.settings.n_ctx = plan.n_ctx  # the context the person chose is kept
        for w in plan.workers:
            self.feed.watch(w)
        self.policy.on_stopped()
        self.save_settings()
        # threads left to llama.cpp: the count measured best here (half the cores is slow)
        self._lane.call(
            lambda: self.supervisor.start(with_measured_threads(plan, self.bench.calibration_path))
        )

    def unload(self) -> None:
        with self._lock:
            self._intent += 1
            self._chosen = None
            self._left_out.clear()
            self._offered.clear()
        self.policy.on_stopped()
        self._lane.call(self.supervisor.stop)

    def reload_without_lost(self) -> None:
        """The person's click (or the policy): load again without the workers it lost."""
        state = self.state
        if not (isinstance(state, Failed) and state.can_reload_without):
            return
        self._leave_out(state.lost_workers)
        with self._lock:
            self._intent += 1
        self._lane.call(self._reload_without_now)

    def _reload_without_now(self) -> None:
        state = self.state
        if isinstance(state, Failed) and state.can_reload_without:
            self.supervisor.reload_without_lost()

    def use_worker_again(self, address: str) -> None:
        """Load the person's plan again with `address` back in it."""
        with self._lock:
            self._left_out.pop(address, None)
            self._offered.discard(address)
            chosen = self._chosen
            missing = list(self._left_out)
            self._intent += 1
        for w in self.settings.workers:
            if w.address == address:
                self.set_enabled(address, True)
        if chosen is None:
            return
        plan = chosen
        for w in missing:
            plan = plan.without_worker(w)
        self._lane.call(
            lambda: self.supervisor.start(with_measured_threads(plan, self.bench.calibration_path))
        )

    def _leave_out(self, workers: list[str]) -> None:
        with self._lock:
            start = not self._left_out
            for w in workers:
                self._left_out.setdefault(w, 0)
            saved = [w for w in self.settings.workers if w.address in workers and w.enabled]
            for w in saved:
                w.enabled = False  # the list shows what the model uses now
        if saved:
            self._workers_changed()
        for w in workers:
            self.feed.watch(w)  # keep asking it: it may come back
        if start:
            self._lane.call(self._check_returns, self._return_check_s)

    # -- the policy, on the supervisor's threads ------
    def _on_engine(self, state: EngineState) -> None:
        self._emit(EngineChanged(state))
        if isinstance(state, Ready):
            self.policy.on_ready()
            self._log(f"ready: {state.placement_text}")
            self.after_load = measure_after_load(self, state)  # a few tokens, while idle
        elif isinstance(state, Failed):
            self._failed(state)

    def _failed(self, state: Failed) -> None:
        cause = state.cause
        with self._lock:
            self.incidents.append(
                Incident(time.time(), state.message, list(state.lost_workers), cause)
            )
            del self.incidents[:-50]
            intent = self._intent
        self._log(f"engine failed: {state.message}")
        decision = self.policy.on_failed(state)
        match decision:
            case ReloadWithout(workers):
                names = ", ".join(self.label(w) for w in workers)
                self._emit(Notice(f"Loading the model again without {names}."))
                self._leave_out(workers)
                self._lane.call(self._reload_without_now)
            case RetryIn(delay_s, attempt, of):
                self._emit(
                    Notice(f"Loading the model again in {delay_s:g} s (try {attempt} of {of}).")
                )
                plan = state.plan
                assert plan is not None

                def retry() -> None:
                    if self._intent == intent and isinstance(self.state, Failed):
                        self.supervisor.start(plan)

                self._lane.call(retry, delay_s)
            case GiveUp(message):
                self._emit(Notice(message))
            case Offer():
                if state.lost_workers:
                    self._leave_out(state.lost_workers)
            case _:
                pass

    def _on_reading(self, reading: WorkerReading) -> None:
        # Every poll brings a document (2 Hz a worker); the rows change only with its state.
        # The gauges read the feed themselves, at their own rate.
        with self._lock:
            changed = self._reading_states.get(reading.address) != reading.state
            self._reading_states[reading.address] = reading.state
        if changed:
            self._emit(WorkerUpdated(reading.address))

    def _in_use(self) -> set[str]:
        s = self.state
        return set(s.plan.workers) if isinstance(s, Loading | Ready) else set()

    def _check_returns(self) -> None:
        """Ask each lost worker whether it is back; steady answers put it back (`serve`, or the
        window's setting) at the next idle moment, else offer it."""
        with self._lock:
            lost = list(self._left_out)
        if not lost or self._closed:
            return
        for address in lost:
            result = self.links.probe(address)
            with self._lock:
                if address not in self._left_out:
                    continue
                self._left_out[address] = self._left_out[address] + 1 if result.ok else 0
                back = self._left_out[address] >= STEADY_ANSWERS
            if not back:
                continue
            if self.use_returning:
                if self._idle():
                    self._emit(Notice(f"{self.label(address)} is back; loading it again."))
                    self.use_worker_again(address)
            elif address not in self._offered:
                self._offered.add(address)
                self._emit(WorkerBack(address, self.label(address)))
        with self._lock:
            again = bool(self._left_out) and not self._closed
        if again:
            self._lane.call(self._check_returns, self._return_check_s)

    def _idle(self) -> bool:
        """Not loading, and not in the middle of an answer (a reload would cut it off)."""
        s = self.state
        if isinstance(s, Loading):
            return False
        if not isinstance(s, Ready):
            return True
        client = self.supervisor.client()
        try:
            status = client.status() if client else {}
        except Exception:
            return False
        return status.get("state") == "idle" and not status.get("waiting")

    # -- what `serve` and the CLI ask ------
    def health(self) -> tuple[int, dict]:
        s = self.state
        body: dict = {"state": type(s).__name__.lower()}
        if isinstance(s, Ready):
            body.update(status="ok", model=s.model, placement=s.placement_text)
        elif isinstance(s, Loading):
            body.update(status="loading", stage=s.stage, progress=round(s.fraction, 3))
        elif isinstance(s, Failed):
            body.update(status="error", message=s.message, lost_workers=s.lost_workers)
            body["cause"] = s.cause
        else:
            body.update(status="stopped")
        with self._lock:
            last = self.incidents[-1] if self.incidents else None
            left_out = list(self._left_out)
        if last is not None:
            body["last_incident"] = {
                "time": last.time,
                "message": last.message,
                "lost_workers": last.lost_workers,
                "cause": last.cause,
            }
        if left_out:
            body["left_out"] = left_out
        return (200 if isinstance(s, Ready) else 503), body

    # -- settings and the end ------
    def save_settings(self) -> str:
        """Write the settings (atomically); returns the problem in words, or ''."""
        if not self._persist:
            return ""
        try:
            with self._lock:
                snapshot = self.settings.model_copy(deep=True)
            snapshot.save(self._settings_path)
        except OSError as e:
            message = f"Could not save settings: {e}"
            self._emit(Notice(message))
            return message
        return ""

    def set_reload_automatically(self, on: bool) -> None:
        """The window's switch: reload by itself after a loss, or wait for the person."""
        self.policy.automatic = on
        with self._lock:
            self.settings.reload_automatically = on
        self.save_settings()

    def set_model_path(self, path: str) -> None:
        with self._lock:
            self.settings.model_path = path
        self.save_settings()

    def close(self, wait_s: float = 10.0) -> None:
        """Stop the engine and everything the head runs. Blocks up to ~wait_s (not for a GUI
        thread: the window calls it from its shutdown, after the window is gone)."""
        self._closed = True
        self.api.close()
        self.chat.close()
        self.bench.close()
        self._lane.close()
        self.supervisor.stop(quiet=True)
        with contextlib.suppress(Exception):
            self.supervisor.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        browser, self._browser = self._browser, None
        if browser is not None:
            with contextlib.suppress(Exception):
                browser.close()
        self.feed.close()
        self.links.close_all()
        self.models.close()
