"""Open the LayerLab window (the default command)."""

from __future__ import annotations

import argparse
import sys

HELP = "open the window"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="a GGUF file to load instead of the demo model")
    p.add_argument("--no-autoload", action="store_true", help="do not load a model at start")


def run(args: argparse.Namespace) -> int:
    from layerlab.ui.app import run_app  # Qt is imported only when a window is wanted

    return run_app(sys.argv[:1], model=args.model, autoload=not args.no_autoload)
