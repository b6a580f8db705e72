"""Share this machine's GPUs (or CPU) with a LayerLab head over llama.cpp RPC."""

from __future__ import annotations

import argparse
import sys

from layerlab.core.endpoint import DEFAULT_RPC_PORT, BadAddress, Endpoint

HELP = "share this machine's devices with a head"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default=f"127.0.0.1:{DEFAULT_RPC_PORT}",
                   help="HOST:PORT for llama.cpp RPC (default 127.0.0.1:%(default)s); "
                        "status is served on PORT+1")
    p.add_argument("--allow-lan", action="store_true",
                   help="allow a non-loopback --listen address (no auth, no encryption yet)")
    p.add_argument("--devices", default="",
                   help="comma-separated llama.cpp device names (e.g. CUDA0,Vulkan1 or cpu); "
                        "default: every GPU, else the CPU")
    p.add_argument("--cache-dir", default=None,
                   help="tensor cache directory (default: the user cache); '' turns it off")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (CPU device only)")


def run(args: argparse.Namespace) -> int:
    from layerlab.core.cluster.worker import WorkerOptions, WorkerStartError, run_worker

    try:
        listen = Endpoint.parse(args.listen)
        opts = WorkerOptions(
            listen=listen,
            devices=[d.strip() for d in args.devices.split(",") if d.strip()] or None,
            cache_dir=args.cache_dir,
            threads=args.threads,
            allow_lan=args.allow_lan,
        )
        return run_worker(opts)
    except (BadAddress, WorkerStartError) as e:
        print(f"layerlab worker: {e}", file=sys.stderr)
        return 2
