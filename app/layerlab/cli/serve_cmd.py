"""Serve a model over the OpenAI-compatible API without a window (a head on a rack box)."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from typing import TYPE_CHECKING

from layerlab.core.endpoint import BadAddress, Endpoint

if TYPE_CHECKING:
    from layerlab.core.head import Head

HELP = "serve a model over the OpenAI-compatible API, without a window"
KEY_ENV = "LAYERLAB_API_KEY"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        nargs="?",
        help="GGUF file, or OWNER/REPO[:QUANT] on Hugging Face, downloaded first "
        "(default: the bundled demo model)",
    )
    p.add_argument(
        "--workers",
        default="",
        help="workers to split over, comma-separated: HOST:PORT of a plain RPC "
        "worker, or a paired worker's name or link address (see layerlab pair)",
    )
    p.add_argument(
        "--state-dir", default=None, help="where this head's key and paired workers are kept"
    )
    p.add_argument(
        "--tensor-split",
        default="",
        help="shares per worker device, e.g. 1,2 (default: by free memory)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU compute threads (default: the count a bench measured fastest here, "
        "else llama.cpp's, half the cores)",
    )
    p.add_argument("--ctx", type=int, default=4096, help="context size in tokens")
    p.add_argument(
        "--parallel",
        type=int,
        default=None,
        metavar="N",
        help="answers decoded together, each with the whole --ctx "
        "(default: as many, up to 4, as fit in memory)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on (default loopback; a LAN address needs an API key)",
    )
    p.add_argument("--port", type=int, default=8080)
    p.add_argument(
        "--api-key",
        default=None,
        help=f"API key clients must send (or set {KEY_ENV}); generated when omitted on loopback",
    )
    p.add_argument(
        "--answer-any-model",
        action="store_true",
        help="answer requests that name another model with the loaded one (default: 404)",
    )
    p.add_argument(
        "--no-auto-reload",
        action="store_true",
        help="stay failed when a worker is lost instead of reloading without it",
    )


def _fail(msg: str) -> int:
    print(f"layerlab serve: {msg}", file=sys.stderr)
    return 2


def _on_hub(text: str) -> bool:
    from layerlab.core.hub.search import repo_id_in

    return not text.endswith(".gguf") and repo_id_in(text) is not None


def _pull(spec: str) -> str | None:
    """Download REPO[:QUANT] (or find it already downloaded); its first file's path."""
    from layerlab.cli.models_cmd import wait_for_download
    from layerlab.core.hub.hub import ModelHub
    from layerlab.core.hub.problems import HubProblem

    hub = ModelHub()
    try:
        item = hub.pull(spec)
        if wait_for_download(hub, item.id) != 0:
            return None
        return hub.downloads.get(item.id).path
    except HubProblem as e:
        _fail(e.message)
        return None
    finally:
        hub.close()


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from layerlab.core.cluster.head_links import HeadLinks
    from layerlab.core.head import Head

    # The same head the window uses; serve reloads by itself (without a lost worker, after a
    # dead engine) and takes a worker back once it answers steadily, unless told not to.
    automatic = not args.no_auto_reload
    head = Head(
        persist=False,
        links=HeadLinks(Path(args.state_dir) if args.state_dir else None),
        automatic=automatic,
        use_returning=automatic,
        log=lambda m: print(f"layerlab: {m}", flush=True),
    )
    try:
        return _serve(args, head)
    finally:
        head.close()


def _parallel_that_fits(plan, free: dict[str, int]) -> int:
    """As many answers (up to 4) as the KV cache for that many full contexts fits: on this
    machine's free memory and each worker device's."""
    import psutil

    from layerlab.core.gguf.facts import read_facts
    from layerlab.core.planner.forecast import HOST, forecast_plan
    from layerlab.core.planner.memory import parallel_that_fits

    try:
        facts = read_facts(plan.model_path)
    except Exception:  # an unreadable file is said in words by the load itself
        return 1
    free = {**free, HOST: psutil.virtual_memory().available}
    return parallel_that_fits(
        lambda n: forecast_plan(facts, plan.model_copy(update={"parallel": n})), free
    )


def _serve(args: argparse.Namespace, head: Head) -> int:
    links = head.links
    from layerlab.core.demo_model import DEMO_NAME, DemoModelMissing, demo_model_path
    from layerlab.core.load_plan import DeviceRef, default_plan

    try:
        if args.model and not os.path.exists(args.model) and _on_hub(args.model):
            model = _pull(args.model)  # REPO[:QUANT], llama.cpp's -hf convention
            if model is None:
                return 2
            name = os.path.basename(model)
        elif args.model:
            model, name = os.path.abspath(args.model), os.path.basename(args.model)
            if not os.path.isfile(model):
                return _fail(f"there is no file at {model}")
        else:
            model, name = str(demo_model_path()), DEMO_NAME
        workers = [
            links.address_of(w) if links.is_paired(w) else str(Endpoint.parse(w))
            for w in args.workers.split(",")
            if w.strip()
        ]
        split = [float(x) for x in args.tensor_split.split(",") if x.strip()]
    except (DemoModelMissing, BadAddress) as e:
        return _fail(str(e))
    except ValueError:
        return _fail(
            f"--tensor-split must be numbers separated by commas, not '{args.tensor_split}'"
        )
    counts = {}
    free: dict[str, int] = {}
    for w in workers:
        result = links.probe(w)
        if not result.ok:
            return _fail(result.problem)
        counts[w] = len(result.devices)
        for i, d in enumerate(result.devices):
            free[DeviceRef.rpc(w, i).label] = d.free
    plan = default_plan(model, counts, args.ctx, name)
    if split:
        if len(split) != len(plan.devices):
            return _fail(
                f"--tensor-split has {len(split)} shares for {len(plan.devices)} worker devices"
            )
        plan = plan.model_copy(update={"tensor_split": split})
    if args.threads is not None:
        if args.threads < 1:
            return _fail(f"--threads must be 1 or more, not {args.threads}")
        plan = plan.model_copy(update={"n_threads": args.threads})
    if args.parallel is not None and args.parallel < 1:
        return _fail(f"--parallel must be 1 or more, not {args.parallel}")
    plan = plan.model_copy(update={"parallel": args.parallel or _parallel_that_fits(plan, free)})

    key = args.api_key or os.environ.get(KEY_ENV)
    try:
        lan = not Endpoint.parse(f"{args.host}:{args.port}").is_loopback
    except BadAddress as e:
        return _fail(str(e))
    if lan and not key:
        return _fail(
            f"serving on {args.host} makes the API reachable from the LAN: give it an "
            f"API key with --api-key or {KEY_ENV}"
        )
    generated = not key
    key = key or secrets.token_urlsafe(24)

    import uvicorn

    from layerlab.core.serve import create_front

    head.load(plan)
    url = f"http://{args.host}:{args.port}/v1"
    print(f"layerlab: serving {name} at {url}", flush=True)
    if generated:
        # Shown once, on the terminal only, so a local client can be pointed at it.
        print(f"layerlab: API key for this run: {key}", flush=True)
    config = uvicorn.Config(
        create_front(head, key, answer_any_model=args.answer_any_model),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    server.run()  # run() closes the head when this returns
    return 0
