"""What this machine and its workers really did, kept so the next forecast uses it.

The speed model starts from constants (peak bandwidth from a table, an efficiency factor, a
round trip per hop); they were 1.4x to 2.7x off on the demo model here (issue 12), and no
constant is right on both an EPYC and a Xeon. After a bench run (or a load measured while
idle) the figures seen are recorded per device identity and per link, with when they were
measured, in a JSON file under the platform's data dir, and the speed model uses them
instead of the constants for that device. A stale figure (older than STALE_AFTER_S) or an
absurd one (outside what any device or link can do) is ignored, never trusted. A figure
inferred from one sample alone (a worker's part reading faster than measured here) waits,
noted as unconfirmed, until a second reading agrees within AGREE_WITHIN.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs

from layerlab.core.atomic_file import write_atomic
from layerlab.core.load_plan import LoadPlan

SCHEMA = 1
STALE_AFTER_S = 30 * 24 * 3600.0  # hardware, drivers and builds change; a month is plenty
# Effective generation bandwidth: below 10 MB/s is a stalled run, above 20 TB/s no device
MIN_BANDWIDTH, MAX_BANDWIDTH = 1e7, 2e13
MAX_HOP_S = 1.0  # one crossing to a worker and back per token; more is a broken link
MAX_THREADS = 1024
# Two readings of one figure agree when the larger is at most this much above the smaller:
# a figure inferred from one sample (a worker reading faster than its part measured here)
# waits for a second one this close before it replaces the old figure.
AGREE_WITHIN = 0.15


@dataclass(frozen=True)
class DeviceFigures:
    """One device as measured: the bytes/s generation reached (llama.cpp's real efficiency
    included), the compute threads that did best, and when."""

    bandwidth: float
    measured_at: float
    threads: int | None = None
    flops: float | None = None  # FLOP/s prompt processing reached, when measured

    def sane(self) -> bool:
        ok = math.isfinite(self.bandwidth) and MIN_BANDWIDTH <= self.bandwidth <= MAX_BANDWIDTH
        ok = ok and (
            self.flops is None or (math.isfinite(self.flops) and 1e8 <= self.flops <= 1e17)
        )
        return ok and (self.threads is None or 1 <= self.threads <= MAX_THREADS)


@dataclass(frozen=True)
class LinkFigures:
    """One link to a worker: seconds a generated token spends crossing to it and back."""

    hop_s: float
    measured_at: float

    def sane(self) -> bool:
        return math.isfinite(self.hop_s) and 0.0 <= self.hop_s <= MAX_HOP_S


HERE = "this machine"  # PlanDevice.machine of the head's own devices


def calibration_path() -> Path:
    return Path(platformdirs.user_data_dir("layerlab")) / "speed-calibration.json"


def device_identity(machine: str, name: str) -> str:
    """A device as the figures know it: where it is and what it is ('this machine · CPU',
    '127.0.0.1:50052 · CPU'), not its position in a plan."""
    return f"{machine} · {name}"


def bare_name(name: str) -> str:
    """The part a device name names: 'AMD EPYC 7B13 on 127.0.0.1:50052' (a worker's device)
    and 'Host RAM (AMD EPYC 7B13)' (the head's CPU) are both 'AMD EPYC 7B13'."""
    part = name.split(" on ", 1)[0].strip()
    if part.startswith("Host RAM (") and part.endswith(")"):
        part = part[len("Host RAM (") : -1]
    return part


class Calibration:
    """Recorded figures by identity. Not thread-safe; the bench and the planner share one
    through a lane or a lock of their own."""

    def __init__(
        self,
        path: Path | None = None,
        now: Callable[[], float] = time.time,
        stale_after_s: float = STALE_AFTER_S,
    ):
        self.path = path
        self._now = now
        self.stale_after_s = stale_after_s
        self.devices: dict[str, DeviceFigures] = {}
        self.links: dict[str, LinkFigures] = {}
        # one reading each, waiting for a second that agrees (never used by a forecast)
        self.unconfirmed: dict[str, DeviceFigures] = {}

    # -- reading -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path | None = None, **kw) -> Calibration:
        """The recorded figures at `path` (the platform's file by default); a missing,
        damaged or newer-schema file gives an empty calibration (constants), never an error."""
        cal = cls(path or calibration_path(), **kw)
        try:
            data = json.loads(cal.path.read_text(encoding="utf-8"))  # type: ignore[union-attr]
        except (OSError, ValueError):
            return cal
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            return cal
        for table, into in (("devices", cal.devices), ("unconfirmed", cal.unconfirmed)):
            for key, raw in (data.get(table) or {}).items():
                try:
                    into[str(key)] = DeviceFigures(
                        float(raw["bandwidth"]),
                        float(raw["measured_at"]),
                        int(raw["threads"]) if raw.get("threads") is not None else None,
                        float(raw["flops"]) if raw.get("flops") is not None else None,
                    )
                except (KeyError, TypeError, ValueError):
                    continue
        for key, raw in (data.get("links") or {}).items():
            try:
                cal.links[str(key)] = LinkFigures(float(raw["hop_s"]), float(raw["measured_at"]))
            except (KeyError, TypeError, ValueError):
                continue
        return cal

    def save(self) -> None:
        """Write the figures atomically (core/atomic_file)."""
        if self.path is None:
            return
        data = {
            "schema": SCHEMA,
            "devices": {k: asdict(v) for k, v in sorted(self.devices.items())},
            "links": {k: asdict(v) for k, v in sorted(self.links.items())},
            "unconfirmed": {k: asdict(v) for k, v in sorted(self.unconfirmed.items())},
        }
        write_atomic(self.path, json.dumps(data, indent=1))

    def _fresh(self, measured_at: float) -> bool:
        age = self._now() - measured_at
        return -60.0 <= age <= self.stale_after_s  # from the future: a clock that jumped

    def device(self, identity: str) -> DeviceFigures | None:
        """The device's figures, or None when there are none or they cannot be trusted."""
        f = self.devices.get(identity)
        return f if f is not None and f.sane() and self._fresh(f.measured_at) else None

    def same_part(self, machine: str, name: str) -> DeviceFigures | None:
        """The device's own figures, else those of the same part measured elsewhere (a
        loopback worker's CPU is this machine's CPU): the part, not the place, sets them.
        Elsewhere means this machine first (the part measured in the head's own process,
        the cleanest reading), then the newest: a figure one worker's run scaled for that
        worker must not become another worker's by the order names sort in."""
        own = self.device(device_identity(machine, name))
        if own is not None:
            return own
        part = bare_name(name)
        same = [
            (identity.partition(" · ")[0] == HERE, f.measured_at, identity, f)
            for identity in self.devices
            if bare_name(identity.partition(" · ")[2]) == part
            and (f := self.device(identity)) is not None
        ]
        return max(same)[3] if same else None

    def link(self, identity: str) -> LinkFigures | None:
        f = self.links.get(identity)
        return f if f is not None and f.sane() and self._fresh(f.measured_at) else None

    def threads(self, identity: str) -> int | None:
        """The compute thread count that did best on this device, when measured."""
        f = self.device(identity)
        return f.threads if f else None

    def threads_here(self) -> int | None:
        """The compute threads that did best on this machine's CPU (the newest trusted
        figure), when a bench has measured them; None: llama.cpp's default."""
        best: DeviceFigures | None = None
        for identity in self.devices:
            machine, _, name = identity.partition(" · ")
            f = self.device(identity) if machine == HERE and name.startswith("Host RAM") else None
            if f is not None and f.threads and (best is None or f.measured_at > best.measured_at):
                best = f
        return best.threads if best else None

    # -- recording -----------------------------------------------------------------------
    def record_device(
        self,
        identity: str,
        bandwidth: float,
        threads: int | None = None,
        flops: float | None = None,
    ) -> DeviceFigures | None:
        """Keep a device's measured bandwidth (and best threads, prompt FLOP/s); an absurd
        one is dropped and None returned. Threads measured before are kept when none are
        given."""
        old = self.devices.get(identity)
        if threads is None and old is not None:
            threads = old.threads
        f = DeviceFigures(float(bandwidth), self._now(), threads, flops)
        if not f.sane():
            return None
        self.devices[identity] = f
        self.unconfirmed.pop(identity, None)  # a figure now stands: a lone reading is moot
        return f

    def agreed(self, identity: str, bandwidth: float) -> float | None:
        """The bandwidth two readings agree on: the mean of `bandwidth` and the reading noted
        before for `identity` (note_unconfirmed) when they are within AGREE_WITHIN of each
        other, else None (no reading before, a stale or absurd one, or they differ)."""
        prev = self.unconfirmed.get(identity)
        if prev is None or not prev.sane() or not self._fresh(prev.measured_at):
            return None
        if not (math.isfinite(bandwidth) and bandwidth > 0):
            return None
        low, high = sorted((float(bandwidth), prev.bandwidth))
        return (low + high) / 2 if high <= low * (1 + AGREE_WITHIN) else None

    def note_unconfirmed(self, identity: str, bandwidth: float) -> bool:
        """Keep one reading for `identity` to compare the next with; the forecasts do not
        use it. An absurd one is dropped (False)."""
        f = DeviceFigures(float(bandwidth), self._now())
        if not f.sane():
            return False
        self.unconfirmed[identity] = f
        return True

    def record_threads(self, identity: str, threads: int) -> None:
        old = self.device(identity)
        if old is not None:
            self.devices[identity] = DeviceFigures(
                old.bandwidth, old.measured_at, int(threads), old.flops
            )

    def record_link(self, identity: str, hop_s: float) -> LinkFigures | None:
        f = LinkFigures(max(0.0, float(hop_s)), self._now())
        if not math.isfinite(hop_s) or hop_s < -0.5 * MAX_HOP_S or not f.sane():
            return None
        self.links[identity] = f
        return f


def with_measured_threads(plan: LoadPlan, path: Path | None = None) -> LoadPlan:
    """`plan` with the thread count measured best on this machine where it leaves threads
    to llama.cpp (whose default, half the logical cores, gave 45 tok/s where 2 threads gave
    81 on a 2-core machine here); a plan that names its threads keeps them. Reads a file."""
    if plan.n_threads is not None:
        return plan
    n = Calibration.load(path).threads_here()
    return plan.model_copy(update={"n_threads": n}) if n else plan
