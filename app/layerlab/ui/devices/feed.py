"""DeviceFeed: the thin QObject between the Devices panel and core's probes.

All probing runs in one background lane (a plain daemon thread, like Anki's serial task
lane): first the inventory (which starts llama.cpp's short-lived device-list child), then
a sampling round every `interval` seconds. Results come back as Qt signals, which Qt
queues onto the GUI thread. The GUI thread only ever sets an Event.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from layerlab.core.cluster.telemetry import WorkerTelemetryProbe
from layerlab.core.cluster.worker_feed import WorkerFeed
from layerlab.core.devices.inventory import Inventory, discover, local_probes
from layerlab.core.devices.sampler import Sampler

WORKER_RETRY_S = 10.0  # ask a worker that did not answer at discovery again this often
VISIBLE_INTERVAL_S = 0.5  # 2 Hz while a person looks
HIDDEN_INTERVAL_S = 5.0  # keeps the history line going, at a tenth of the cost


def local_inventory() -> Inventory:
    from layerlab.core.devices.ggml_view import read_llama_devices

    return discover(local_probes(), read_llama_devices())


class DeviceFeed(QObject):
    inventory_ready = Signal(object)  # list[Inventory]: this machine first, then workers
    samples_ready = Signal(object)  # dict[str, DeviceSample]

    def __init__(
        self,
        parent: QObject | None = None,
        inventory: Callable[[], Inventory] = local_inventory,
        probe_timeout: float = 1.0,
        worker_feed: WorkerFeed | None = None,
    ):
        super().__init__(parent)
        # The head's one poller per worker (core/cluster/worker_feed.py): the gauges read what
        # it last received instead of asking the workers again. None: each probe polls.
        self._worker_feed = worker_feed
        self._make_local = inventory
        self._probe_timeout = probe_timeout
        self._interval = VISIBLE_INTERVAL_S
        self._workers: list[str] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._rediscover = threading.Event()
        self._thread: threading.Thread | None = None

    # -- called on the GUI thread; none of these wait on probes --------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._wake.set()
            return
        # Each lane gets its own stop flag: a lane told to stop (stop(wait=0)) may still be
        # finishing a round, and must not be revived by the next start().
        self._stop = threading.Event()
        self._rediscover.set()
        self._thread = threading.Thread(
            target=self._lane, args=(self._stop,), name="device-feed", daemon=True
        )
        self._thread.start()

    def stop(self, wait: float = 3.0) -> None:
        """Stop sampling. Waits at most `wait` s for the round in flight (probes time out
        on their own; a hung probe's thread is a daemon and is left behind). `wait=0`
        returns at once: the lane ends after its round and emits nothing more."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            if wait > 0:
                self._thread.join(wait)
            self._thread = None

    def set_visible(self, visible: bool) -> None:
        self._interval = VISIBLE_INTERVAL_S if visible else HIDDEN_INTERVAL_S
        self._wake.set()

    def set_interval(self, seconds: float) -> None:
        self._interval = seconds
        self._wake.set()

    def set_workers(self, endpoints: list[str]) -> None:
        self._workers = list(endpoints)
        self._rediscover.set()
        self._wake.set()

    @property
    def interval(self) -> float:
        return self._interval

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the lane -----------------------------------------------------------------------
    def _lane(self, stop: threading.Event) -> None:
        local: Inventory | None = None
        invs: list[Inventory] = []
        sampler: Sampler | None = None
        discovered = 0.0
        try:
            while not stop.is_set():
                if self._rediscover.is_set() or sampler is None:
                    self._rediscover.clear()
                    if local is None:
                        local = self._make_local()
                    for inv in invs[1:]:
                        inv.close()
                    invs = [local] + [
                        discover([WorkerTelemetryProbe(w, self._worker_feed)], machine_name=w)
                        for w in self._workers
                    ]
                    sampler = Sampler([g for i in invs for g in i.groups], self._probe_timeout)
                    discovered = time.monotonic()
                    if stop.is_set():
                        break
                    self.inventory_ready.emit(invs)
                assert sampler is not None
                samples = sampler.round()
                if stop.is_set():
                    break
                self.samples_ready.emit(samples)
                if (
                    any(not i.machine.devices for i in invs[1:])
                    and time.monotonic() - discovered > WORKER_RETRY_S
                ):
                    self._rediscover.set()
                self._wake.wait(self._interval)
                self._wake.clear()
        finally:
            for inv in invs:
                inv.close()
