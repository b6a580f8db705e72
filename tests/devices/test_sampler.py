"""A probe that raises or hangs marks only its own devices stale, within the deadline."""

from __future__ import annotations

import threading
import time

from layerlab.core.devices.model import DeviceInfo, DeviceSample
from layerlab.core.devices.sampler import Sampler


class CountingProbe:
    def __init__(self, name, key, hang: threading.Event | None = None, fail=False):
        self.name, self.key, self.hang, self.fail = name, key, hang, fail
        self.calls = 0
        self.used = 100

    def discover(self, claimed):
        return [DeviceInfo(key=self.key, vendor="other", name=self.name)]

    def sample(self):
        self.calls += 1
        if self.fail:
            raise OSError("driver said EIO")
        if self.hang is not None:
            self.hang.wait(10)
        return [
            DeviceSample(
                key=self.key,
                memory_used=self.used,
                memory_free=900,
                memory_total=1000,
                time=time.time(),
            )
        ]

    def close(self):
        pass


def test_hanging_and_failing_probes_do_not_hide_the_others():
    release = threading.Event()
    good = CountingProbe("good", "g")
    hung = CountingProbe("hung", "h")
    bad = CountingProbe("bad", "b")
    sampler = Sampler([(good, ["g"]), (hung, ["h"]), (bad, ["b"])], timeout=0.2)
    first = sampler.round()  # every probe answers once; remember hung's numbers
    assert not any(s.stale for s in first.values())
    hung.hang, hung.used = release, 555
    bad.fail = True

    t0 = time.monotonic()
    out = sampler.round()
    second = sampler.round()
    elapsed = time.monotonic() - t0
    try:
        assert elapsed < 1.5  # two rounds, each bounded by the 0.2 s deadline
        assert not out["g"].stale and not second["g"].stale
        assert out["h"].stale and "did not answer within 0.2 s" in out["h"].problem
        assert out["h"].memory_used == 100  # the last good numbers, greyed out
        assert out["b"].stale and "driver said EIO" in out["b"].problem
        assert hung.calls == 2  # never started again while still hanging
        assert sampler.busy() == ["hung"]
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while sampler.busy() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sampler.busy() == [], "the released probe never finished its round"
    back = sampler.round()
    assert back["h"].memory_used == 555 and not back["h"].stale
