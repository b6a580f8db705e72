"""Recorded rigs for the device tests. NVIDIA recordings play through the real pynvml
(only its C library is replaced); AMD/Intel sysfs recordings become real files in tmp_path."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from layerlab.core.devices.rig import read_rig
from tests.support.nvml_playback import NvmlPlayback

RIGS = Path(__file__).parent.parent / "fixtures" / "rigs"
ALL_RIGS = sorted(p.name for p in RIGS.glob("*.json"))


def rig(name: str) -> dict:
    return copy.deepcopy(read_rig(RIGS / name))


@pytest.fixture
def playback():
    """playback(rig_dict) installs that rig's NVML into pynvml for the test."""
    installed: list[NvmlPlayback] = []

    def install(r: dict) -> NvmlPlayback:
        pb = NvmlPlayback(r["nvml"]).install()
        installed.append(pb)
        return pb

    yield install
    for pb in reversed(installed):
        pb.uninstall()
