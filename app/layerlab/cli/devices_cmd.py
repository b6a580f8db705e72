"""List every device LayerLab can use here (and on workers), with live numbers.

`--record FILE` writes this machine as a recorded rig (the format of
tests/fixtures/rigs/*.json) that you can send to the LayerLab developers.
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "list this machine's devices (GPUs, host RAM) as LayerLab sees them"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--record", metavar="FILE", help="write this machine as a recorded rig")
    p.add_argument("--name", default="", help="the rig's name for --record (default: hostname)")
    p.add_argument("--rig", metavar="FILE", help="show a recorded rig instead of this machine")
    p.add_argument(
        "--worker",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="also show a worker's devices (repeatable)",
    )
    p.add_argument(
        "--no-llama",
        action="store_true",
        help="do not ask llama.cpp for its device names (skips a child process)",
    )


def _line(info, sample) -> str:
    from layerlab.core.units import format_bytes

    name = info.llama_name or "-"
    if info.memory_total or (sample and sample.memory_total):
        total = sample.memory_total if sample and sample.memory_total else info.memory_total
        used = format_bytes(sample.memory_used) if sample and not sample.stale else "?"
        mem = f"{used} / {format_bytes(total)}"
    else:
        mem = "memory not reported"
    extra = sample.readings() if sample else []
    if info.pcie_gen and info.pcie_width:
        extra.append(f"PCIe {info.pcie_gen}.0 x{info.pcie_width}")
    if info.memory_bandwidth:
        extra.append(f"{info.memory_bandwidth / 1e9:.0f} GB/s")
    if info.pci_bus_id:
        extra.append(info.pci_bus_id)
    if info.partial:
        extra.append("(partial: sysfs only)")
    if sample and sample.stale:
        extra.append(f"STALE: {sample.problem}")
    return f"  {name:<24} {info.name:<40} {mem:<22} {'  '.join(extra)}"


def run(args: argparse.Namespace) -> int:
    from layerlab.core.cluster.telemetry import WorkerTelemetryProbe
    from layerlab.core.devices import inventory, rig
    from layerlab.core.devices.ggml_view import read_llama_devices
    from layerlab.core.endpoint import BadAddress

    if args.record:
        import socket

        data = rig.record_rig(
            args.name or socket.gethostname(),
            notes="recorded with `layerlab devices --record`",
            with_llama=not args.no_llama,
        )
        rig.save_rig(data, args.record)
        print(f"Wrote this machine as a rig to {args.record}.")
        return 0

    if args.rig:
        try:
            inv = rig.rig_inventory(rig.read_rig(args.rig))
        except rig.RigFormatError as e:
            print(f"layerlab devices: {e}", file=sys.stderr)
            return 2
    else:
        llama = None if args.no_llama else read_llama_devices()
        inv = inventory.discover(inventory.local_probes(), llama)
    invs = [inv]
    for w in args.worker:
        try:
            invs.append(inventory.discover([WorkerTelemetryProbe(w)], machine_name=w))
        except BadAddress as e:
            print(f"layerlab devices: {e}", file=sys.stderr)
            return 2
    try:
        samples = [inventory.sample_once(i) for i in invs]
        if args.json:
            print(
                json.dumps(
                    {
                        "machines": [
                            {
                                "name": i.machine.name,
                                "devices": [d.to_dict() for d in i.machine.devices],
                                "samples": {k: s.to_dict() for k, s in smp.items()},
                                "notes": i.notes,
                                "cpu_only": i.cpu_only_line,
                                "llama_problem": i.llama_problem,
                                "unseen_by_llama": i.unseen_by_llama,
                            }
                            for i, smp in zip(invs, samples, strict=True)
                        ]
                    },
                    indent=1,
                )
            )
            return 0
        for i, smp in zip(invs, samples, strict=True):
            print(i.machine.name)
            if not i.machine.devices:
                print("  (no answer: " + "; ".join(i.notes) + ")")
            for d in i.machine.devices:
                print(_line(d, smp.get(d.key)))
        if inv.cpu_only_line:
            print(inv.cpu_only_line)
        if inv.llama_problem:
            print(f"llama.cpp's view: {inv.llama_problem}")
        for key in inv.unseen_by_llama:
            d = next(x for x in inv.machine.devices if x.key == key)
            print(
                f"Note: llama.cpp does not list {d.name} ({d.pci_bus_id}); it cannot hold layers."
            )
        return 0
    finally:
        for i in invs:
            i.close()
