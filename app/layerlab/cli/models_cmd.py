"""Find, fit, download and manage GGUF models from Hugging Face, without a window.

layerlab models search QUERY          GGUF repos, most downloaded first
layerlab models files REPO [--fit]    a repo's quants (split parts added up), with fit badges
layerlab models pull REPO[:QUANT]     download (Q4_K_M by default; the tag is case-insensitive)
layerlab models ls                    models on disk
layerlab models rm PATH|REPO:QUANT    delete one from disk
"""

from __future__ import annotations

import argparse
import sys
import time

HELP = "find, fit, download and manage GGUF models from Hugging Face"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = p.add_subparsers(dest="models_command", required=True)
    s = sub.add_parser("search", help="GGUF repos for some words, a repo id or a hub URL")
    s.add_argument("query", nargs="+")
    s.add_argument("--limit", type=int, default=20)
    f = sub.add_parser("files", help="a repo's quants, with --fit a badge for this machine")
    f.add_argument("repo")
    f.add_argument("--fit", action="store_true", help="plan each quant from its remote header")
    f.add_argument("--ctx", type=int, default=None, help="context size (default 4096)")
    pl = sub.add_parser("pull", help="download REPO[:QUANT] (Q4_K_M by default)")
    pl.add_argument("spec")
    sub.add_parser("ls", help="models on disk")
    r = sub.add_parser("rm", help="delete a model from disk")
    r.add_argument("model", help="its path, or REPO:QUANT for one in the Hugging Face cache")
    r.add_argument("--yes", action="store_true", help="do not ask")


def _say(text: str) -> None:
    print(text, flush=True)


def _fail(text: str) -> int:
    print(f"layerlab models: {text}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from layerlab.core.hub.hub import ModelHub
    from layerlab.core.hub.problems import HubProblem

    hub = ModelHub()
    try:
        return {
            "search": _search,
            "files": _files,
            "pull": _pull,
            "ls": _ls,
            "rm": _rm,
        }[args.models_command](hub, args)
    except HubProblem as e:
        return _fail(e.message)
    except KeyboardInterrupt:
        return _fail("stopped; `layerlab models pull` again continues where it stopped")
    finally:
        hub.close()


def _search(hub, args) -> int:
    rows = hub.search(" ".join(args.query), limit=args.limit)
    if not rows:
        _say("No GGUF repos found.")
        return 0
    width = max(len(r.repo_id) for r in rows)
    _say(f"{'REPO':<{width}}  {'DOWNLOADS':>9}  {'LIKES':>5}  {'PARAMS':>6}  UPDATED     GATED")
    for r in rows:
        _say(
            f"{r.repo_id:<{width}}  {r.downloads:>9,}  {r.likes:>5}  {r.parameters_text:>6}  "
            f"{r.updated_text:<10}  {'gated' if r.gated else ''}"
        )
    return 0


def _files(hub, args) -> int:
    from layerlab.core.hub.hub import parse_spec
    from layerlab.core.units import format_bytes

    repo_id, _ = parse_spec(args.repo, hub.config.host)
    quants = hub.quants(repo_id)
    badges = {}
    if args.fit:
        cluster = hub.cluster()
        if args.ctx:
            cluster.n_ctx = args.ctx
        badges = hub.badges(repo_id, quants, cluster=cluster)
    best = hub.recommended(quants, badges) if args.fit else None
    for q in quants:
        parts = f" ({q.parts} parts)" if q.parts > 1 else ""
        line = f"{q.tag:<10} {format_bytes(q.size):>10}{parts}"
        if q.tag in badges:
            b = badges[q.tag]
            line += f"  {b.text}" + (f", {b.speed_text}" if b.speed_text else "")
            if b.kind == "unknown":
                line += f" ({b.detail})"
        if best is not None and q.tag == best.tag:
            line += "  ← recommended"
        _say(line)
    return 0


def _pull(hub, args) -> int:
    item = hub.pull(args.spec)
    return wait_for_download(hub, item.id)


def wait_for_download(hub, item_id: int) -> int:
    """Show one download's progress on the terminal until it ends; 0 when done."""
    last = 0.0
    dl = hub.downloads
    item = dl.get(item_id)
    _say(f"Downloading {item.name} ({len(item.files)} file(s))…")
    while True:
        item = dl.get(item_id)
        if item.state in ("done", "failed", "cancelled"):
            break
        now = time.monotonic()
        if now - last >= 1.0:
            last = now
            note = f" · {item.note}" if item.note else ""
            print(f"\r  {item.progress_text()}{note}\033[K", end="", flush=True)
        time.sleep(0.1)
    print()
    if item.state != "done":
        return _fail(item.note or f"the download {item.state}")
    _say(f"Verified and saved: {item.path}")
    return 0


def _ls(hub, args) -> int:
    models = hub.library.models()
    if not models:
        _say("No models on disk yet. `layerlab models pull REPO[:QUANT]` downloads one.")
        return 0
    for m in models:
        facts = hub.library.facts(m)
        _say(f"{m.name}  ({m.size_text}, {m.where})\n    {facts.text()}\n    {m.path}")
    return 0


def _rm(hub, args) -> int:
    want = args.model
    models = hub.library.models()
    matches = [
        m for m in models if m.path == want or m.name.replace(" · ", ":").lower() == want.lower()
    ]
    if not matches:
        return _fail(f"no model '{want}' on disk (see `layerlab models ls`)")
    m = matches[0]
    if not args.yes:
        answer = input(f"Delete {m.name} ({m.size_text}) from {m.where}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            _say("Kept.")
            return 1
    from layerlab.core.units import format_bytes

    _say(f"Deleted {m.name}; {format_bytes(hub.library.delete(m))} freed.")
    return 0
