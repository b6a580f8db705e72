"""Pair this head with a sharing worker: type the code the worker shows, once.

After pairing, the worker can be named by its name or its address wherever a worker is
asked for (`layerlab serve --workers bench-box`); the head reaches it over the encrypted
link. `--list` shows the workers this head is paired with.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "pair this head with a sharing worker (type the code it shows)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "address",
        nargs="?",
        help="HOST:PORT of the worker's link (port 50050 if omitted), as its share switch shows it",
    )
    p.add_argument("code", nargs="?", help="the pairing code the worker shows, e.g. 482-913")
    p.add_argument(
        "--fingerprint",
        default=None,
        help="the worker's key fingerprint, if known (refuse any other key)",
    )
    p.add_argument(
        "--name",
        default=None,
        help="how the worker sees this head (default: host name; only used for a new identity)",
    )
    p.add_argument(
        "--state-dir", default=None, help="where this machine's key and paired workers are kept"
    )
    p.add_argument("--list", action="store_true", help="list paired workers and exit")
    p.add_argument(
        "--unpair",
        metavar="WORKER",
        default=None,
        help="forget a paired worker (by name or address)",
    )


def run(args: argparse.Namespace) -> int:
    from layerlab.core.cluster.head_links import HeadLinks
    from layerlab.core.cluster.identity import short_fingerprint
    from layerlab.core.cluster.link import LinkError
    from layerlab.core.cluster.pairing import PairingFailed
    from layerlab.core.endpoint import BadAddress

    links = HeadLinks(Path(args.state_dir) if args.state_dir else None, name=args.name)
    if args.list:
        peers = links.paired()
        if not peers:
            print("No paired workers.")
        for p in peers:
            print(f"{p.name}\t{p.address}\tkey {short_fingerprint(p.fingerprint)}")
        return 0
    if args.unpair:
        if not links.is_paired(args.unpair):
            print(f"layerlab pair: {args.unpair} is not a paired worker.", file=sys.stderr)
            return 2
        links.unpair(args.unpair)
        print(f"Forgot {args.unpair}.")
        return 0
    if not (args.address and args.code):
        print(
            "layerlab pair: give the worker's address and the code it shows, e.g. "
            "layerlab pair 192.168.1.20:50050 482-913",
            file=sys.stderr,
        )
        return 2
    try:
        peer = links.pair(args.address, args.code, args.fingerprint)
    except (LinkError, PairingFailed, BadAddress) as e:
        print(f"layerlab pair: {e}", file=sys.stderr)
        return 1
    print(f"Paired with {peer.name} at {peer.address} (key {short_fingerprint(peer.fingerprint)}).")
    print(f"Use it with: layerlab serve --workers {peer.name}")
    return 0
