"""`layerlab` entry point. Each subcommand lives in its own module and registers here."""

from __future__ import annotations

import argparse
import sys

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
    parser.add_argument(
        "--version", action=_VersionAction, help="show the version, llama.cpp's build and backends"
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="load the demo model on the best backend found, generate a few tokens, exit",
    )
    app_cmd.add_arguments(parser)  # `layerlab` alone opens the window
    sub = parser.add_subparsers(dest="command")
    for name, module in SUBCOMMANDS:
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


class _VersionAction(argparse.Action):
    """Prints what this LayerLab carries (llama.cpp build, RPC protocol, backend modules)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from layerlab.core.build_info import version_text

        print(version_text())
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "self_test", False) and getattr(args, "_run", None) is None:
        from layerlab.cli.self_test import run_self_test

        return run_self_test()
    run = getattr(args, "_run", app_cmd.run)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
