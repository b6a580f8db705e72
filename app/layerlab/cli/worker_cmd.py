"""Share this machine's GPUs (or CPU) with a LayerLab head over llama.cpp RPC."""

from __future__ import annotations

import argparse
import sys

from layerlab.core.endpoint import DEFAULT_RPC_PORT, BadAddress, Endpoint

HELP = "share this machine's devices with a head"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--listen",
        default=f"127.0.0.1:{DEFAULT_RPC_PORT}",
        help="HOST:PORT for llama.cpp RPC (default %(default)s); status is served on PORT+1",
    )
    p.add_argument(
        "--allow-lan",
        action="store_true",
        help="allow a non-loopback --listen address (no auth, no encryption yet)",
    )
    p.add_argument(
        "--devices",
        default="",
        help="comma-separated llama.cpp device names (e.g. CUDA0,Vulkan1 or cpu); "
        "default: every GPU, else the CPU",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="tensor cache directory (default: the user cache); '' turns it off",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (CPU device only; default: the count a bench measured best on this "
        "machine, else one per core)",
    )
    share = p.add_argument_group("sharing on the LAN (paired heads only, over TLS)")
    share.add_argument(
        "--share",
        action="store_true",
        help="open the LAN link for paired heads, announce it, show a pairing code",
    )
    share.add_argument(
        "--share-on",
        default="0.0.0.0:50050",
        help="HOST:PORT of the LAN link (default %(default)s)",
    )
    share.add_argument(
        "--name", default=None, help="how heads see this worker (default: host name)"
    )
    share.add_argument(
        "--state-dir", default=None, help="where this machine's key and paired heads are kept"
    )
    share.add_argument("--no-announce", action="store_true", help="do not announce on mDNS")
    share.add_argument(
        "--json-events", action="store_true", help="print events as JSON lines (for the GUI)"
    )
    share.add_argument(
        "--end-with-app",
        action="store_true",
        help="stop when standard input closes: the app that started this worker has gone",
    )
    service = p.add_argument_group("as a service (Linux, systemd)")
    service.add_argument(
        "--install-service",
        action="store_true",
        help="run this worker (with the options given) as a user service, started at log-in",
    )
    service.add_argument(
        "--uninstall-service", action="store_true", help="stop and remove the worker service"
    )


def run(args: argparse.Namespace) -> int:
    if args.install_service or args.uninstall_service:
        from layerlab.cli import worker_service

        argv = sys.argv[sys.argv.index("worker") + 1 :] if "worker" in sys.argv else []
        code, words = (
            worker_service.uninstall() if args.uninstall_service else worker_service.install(argv)
        )
        print(f"layerlab worker: {words}", file=sys.stderr if code else sys.stdout)
        return code
    from layerlab.core.cluster.worker import WorkerOptions, WorkerStartError, run_worker

    if args.threads is not None and args.threads < 1:
        print(f"layerlab worker: --threads must be 1 or more, not {args.threads}", file=sys.stderr)
        return 2
    threads, why = compute_threads(args.threads)
    print(f"LayerLab worker starting with {threads} CPU threads ({why}).", flush=True)
    try:
        listen = Endpoint.parse(args.listen)
        opts = WorkerOptions(
            listen=listen,
            devices=[d.strip() for d in args.devices.split(",") if d.strip()] or None,
            cache_dir=args.cache_dir,
            threads=threads,
            allow_lan=args.allow_lan,
            end_with_stdin=args.end_with_app,
        )
        if args.share:
            from pathlib import Path

            from layerlab.core.cluster.link_protocol import DEFAULT_LINK_PORT
            from layerlab.core.cluster.sharing import ShareOptions

            opts.share = ShareOptions(
                address=Endpoint.parse(args.share_on, DEFAULT_LINK_PORT),
                state_dir=Path(args.state_dir) if args.state_dir else None,
                name=args.name,
                announce=not args.no_announce,
                json_events=args.json_events,
            )
        return run_worker(opts)
    except (BadAddress, WorkerStartError) as e:
        print(f"layerlab worker: {e}", file=sys.stderr)
        return 2


def compute_threads(asked: int | None) -> tuple[int, str]:
    """The CPU threads the worker runs with, and why, in words: --threads, else the count a
    bench measured best on this machine (llama.cpp's own default, half the cores, gave 45
    tok/s where 2 threads gave 81 on a 2-core machine here), else one per core."""
    if asked is not None:
        return asked, "--threads"
    import os

    from layerlab.core.planner.calibration import Calibration

    measured = Calibration.load().threads_here()
    if measured:
        return measured, "the count a bench measured best on this machine; --threads sets another"
    return max(1, os.cpu_count() or 1), "one per core: no bench has measured this machine yet"
