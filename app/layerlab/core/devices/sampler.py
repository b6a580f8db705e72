"""One sampling round over every probe, each with a deadline.

Each probe's `sample()` runs in its own daemon thread. A probe that raises marks its
devices stale; one that has not answered by the deadline is left running (never started
twice) and its devices are stale until it comes back. A stale sample keeps the last good
numbers so a gauge can grey out instead of dropping to zero.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from layerlab.core.devices.model import DeviceSample
from layerlab.core.devices.probe_chain import Probe, stale


class _Job:
    def __init__(self, probe: Probe):
        self.probe = probe
        self.done = threading.Event()
        self.result: list[DeviceSample] = []
        self.error: BaseException | None = None
        threading.Thread(target=self._run, name=f"probe {probe.name}", daemon=True).start()

    def _run(self) -> None:
        try:
            self.result = self.probe.sample()
        except BaseException as e:  # reported as a stale gauge, never raised in the sampler
            self.error = e
        finally:
            self.done.set()


class Sampler:
    def __init__(self, groups: list[tuple[Probe, list[str]]], timeout: float = 1.0):
        self.groups = groups
        self.timeout = timeout
        self._jobs: dict[int, _Job] = {}
        self._last: dict[str, DeviceSample] = {}

    def round(self) -> dict[str, DeviceSample]:
        """Every device's sample (keys of devices a probe newly reports included)."""
        for probe, _ in self.groups:
            if id(probe) not in self._jobs:
                self._jobs[id(probe)] = _Job(probe)
        deadline = time.monotonic() + self.timeout
        for job in list(self._jobs.values()):
            job.done.wait(max(0.0, deadline - time.monotonic()))
        now = time.time()
        out: dict[str, DeviceSample] = {}
        for probe, keys in self.groups:
            job = self._jobs[id(probe)]
            if not job.done.is_set():
                for k in keys:
                    out[k] = self._stale(
                        k, f"{probe.name} did not answer within {self.timeout:g} s", now
                    )
                continue
            del self._jobs[id(probe)]
            if job.error is not None:
                for k in keys:
                    out[k] = self._stale(k, f"{probe.name}: {job.error}", now)
                continue
            for s in job.result:
                if s.stale:
                    out[s.key] = self._stale(s.key, s.problem, now)
                else:
                    out[s.key] = self._last[s.key] = s
            for k in keys:
                if k not in out:
                    out[k] = self._stale(k, f"{probe.name} gave no reading", now)
        return out

    def _stale(self, key: str, problem: str, now: float) -> DeviceSample:
        last = self._last.get(key)
        if last is None:
            return stale(key, problem, now)
        return replace(last, stale=True, problem=problem, time=now)

    def busy(self) -> list[str]:
        """Names of probes still running past their deadline."""
        return [j.probe.name for j in self._jobs.values() if not j.done.is_set()]

    def close(self, close_probes: bool = True) -> None:
        if close_probes:
            for probe, _ in self.groups:
                if id(probe) not in self._jobs:  # a hung probe is left to its thread
                    probe.close()
