"""The one small interface every device probe speaks (NVML, sysfs, psutil, a worker).

A probe is a fallback-chain link: `discover(claimed)` returns the devices it can read that
no earlier probe claimed (by PCI bus id), or raises ProbeUnavailable with the reason in the
person's words; `sample()` reads the live numbers of the devices it discovered. A device
that fails alone comes back as a stale sample with a problem; a probe that fails as a whole
raises, and the sampler marks its devices stale.
"""

from __future__ import annotations

from typing import Protocol

from layerlab.core.devices.model import DeviceInfo, DeviceSample


class ProbeUnavailable(Exception):
    """This probe cannot read anything here (no library, no driver, no permission)."""


class Probe(Protocol):
    name: str

    def discover(self, claimed: set[str]) -> list[DeviceInfo]: ...

    def sample(self) -> list[DeviceSample]: ...

    def close(self) -> None: ...


def stale(key: str, problem: str, when: float) -> DeviceSample:
    """A sample that says only 'could not read this device'."""
    return DeviceSample(
        key=key,
        memory_used=0,
        memory_free=0,
        memory_total=0,
        time=when,
        stale=True,
        problem=problem,
    )
