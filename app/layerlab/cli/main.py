"""`layerlab` entry point. Each subcommand lives in its own module and registers here."""

from __future__ import annotations

import argparse
import sys

from layerlab import __version__
from layerlab.cli import (
    app_cmd,
    bench_cmd,
    chat_cmd,
    devices_cmd,
    models_cmd,
    pair_cmd,
    plan_cmd,
    serve_cmd,
    worker_cmd,
)

# (name, module): each module has add_arguments(parser) and run(args) -> int
SUBCOMMANDS = [
    ("worker", worker_cmd),
    ("serve", serve_cmd),
    ("plan", plan_cmd),
    ("devices", devices_cmd),
    ("pair", pair_cmd),
    ("chat", chat_cmd),
    ("bench", bench_cmd),
    ("models", models_cmd),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="layerlab", description=__doc__)
    parser.add_argument("--version", action="version", version=f"LayerLab {__version__}")
    app_cmd.add_arguments(parser)  # `layerlab` alone opens the window
    sub = parser.add_subparsers(dest="command")
    for name, module in SUBCOMMANDS:
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run = getattr(args, "_run", app_cmd.run)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
