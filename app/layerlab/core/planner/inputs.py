"""Gather a plan's inputs the way the CLI and the GUI name them: model, devices, workers."""

from __future__ import annotations

from pathlib import Path

from layerlab.core.gguf import HubFile, ModelFacts, check_model_file
from layerlab.core.planner.calibration import Calibration
from layerlab.core.planner.devices import PlanDevice, devices_from_machine, devices_from_probe
from layerlab.core.planner.planner import Planner, PlanOptions, PlanResult
from layerlab.core.units import GiB


class PlanInputError(ValueError):
    """A plan input the person typed cannot be used; the message says which and why."""


def open_facts(model: str, endpoint: str | None = None) -> ModelFacts:
    """Facts of a local file, or of 'hf://owner/repo/file.gguf' read by ranges from the hub,
    once the header agrees with the file: a damaged or incomplete file raises
    `ModelFileDamaged` (a `GGUFError`) in words instead of being planned."""
    if model.startswith("hf://"):
        parts = model[5:].split("/", 2)
        if len(parts) < 3:
            raise PlanInputError("a hub model is hf://OWNER/REPO/FILE.gguf")
        return check_model_file(HubFile(f"{parts[0]}/{parts[1]}", parts[2], endpoint=endpoint))
    if not Path(model).exists():
        raise PlanInputError(f"{model}: there is no such file")
    if not Path(model).is_file():
        raise PlanInputError(f"{model} is a folder, not a model file")
    return check_model_file(model)


def this_machine_devices() -> list[PlanDevice]:
    """This machine's devices through the Devices probes (no llama.cpp in this process).

    Without llama.cpp's own device list, a GPU's llama.cpp name is not known for certain;
    NVIDIA GPUs are named CUDA0.. in probe order (llama.cpp's CUDA order by PCI bus id).
    """
    from dataclasses import replace

    from layerlab.core.devices.inventory import discover, local_probes, sample_once

    inv = discover(local_probes())
    try:
        inv.machine.samples.update(sample_once(inv))
    finally:
        inv.close()
    n_cuda = 0
    named = []
    for d in inv.machine.devices:
        if d.kind == "gpu" and d.vendor == "nvidia" and not d.llama_name:
            d = replace(d, llama_name=f"CUDA{n_cuda}")
            n_cuda += 1
        named.append(d)
    inv.machine.devices = named
    return devices_from_machine(inv.machine)


def worker_devices(workers: str) -> list[PlanDevice]:
    from layerlab.core.cluster.worker_check import probe

    out: list[PlanDevice] = []
    for ep in [w.strip() for w in workers.split(",") if w.strip()]:
        r = probe(ep)
        if not r.ok:
            raise PlanInputError(r.problem)
        out += devices_from_probe(r)
    return out


def plan_from_args(
    model: str,
    ctx: int | None = None,
    workers: str = "",
    strategy: str = "fastest",
    ratios: str = "",
    reserves: list[str] | None = None,
    exclude: str = "",
    cache_type: str = "f16",
    fit: bool = True,
    rig: str | None = None,
    calibration: Calibration | None = None,
) -> PlanResult:
    facts = open_facts(model)
    if rig:
        from layerlab.core.devices.rig import load_rig

        devices = devices_from_machine(load_rig(rig))
    else:
        devices = this_machine_devices()
    devices += worker_devices(workers)
    gpus = [d for d in devices if not d.is_host]
    opts = PlanOptions(
        strategy=strategy, n_ctx=ctx, type_k=cache_type, type_v=cache_type, flash_attn=True, fit=fit
    )
    if ratios:
        try:
            shares = [float(x) for x in ratios.split(",")]
        except ValueError:
            raise PlanInputError(f"--ratios '{ratios}' is not a list of numbers") from None
        if len(shares) != len(gpus):
            raise PlanInputError(
                f"--ratios has {len(shares)} shares for {len(gpus)} devices "
                f"({', '.join(d.label for d in gpus)})"
            )
        opts.ratios = {d.label: s for d, s in zip(gpus, shares, strict=True)}
    known = {d.label for d in devices}
    for item in reserves or []:
        label, _, gib = item.partition("=")
        if label not in known:
            raise PlanInputError(f"--reserve names '{label}'; devices: {', '.join(sorted(known))}")
        try:
            opts.reserves[label] = int(float(gib) * GiB)
        except ValueError:
            raise PlanInputError(f"--reserve {item}: the amount is GiB, e.g. CUDA0=2") from None
    for label in [x.strip() for x in exclude.split(",") if x.strip()]:
        if label not in known:
            raise PlanInputError(f"--exclude names '{label}'; devices: {', '.join(sorted(known))}")
        opts.excluded.add(label)
    return Planner(facts, model, calibration).plan(devices, opts)


def enabled_worker_devices(
    addresses: list[str], results: dict, last_good: dict | None = None
) -> list[PlanDevice]:
    """Plan devices of the enabled workers, from their probe results (`ProbeResult` by
    address), in the person's order. A worker that answered 'busy' is serving a head (often
    this one, with the model loaded): its last good answer stands in for it. Workers without
    a good answer add nothing."""
    out: list[PlanDevice] = []
    for address in addresses:
        r = results.get(address)
        if r is not None and not r.ok and r.kind == "busy" and last_good:
            r = last_good.get(address, r)
        if r is not None and r.ok:
            out += devices_from_probe(r)
    return out
