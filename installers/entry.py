"""The frozen LayerLab's entry point (PyInstaller starts here).

The app starts its helper processes as `<python> -m <module> ...` (the engine, the device
listing, downloads, the worker). In the bundle `sys.executable` is this program, so it
accepts the same `-m <module>` form and runs the module as Python would; anything else is
the `layerlab` command line.
"""

from __future__ import annotations

import runpy
import sys


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "-m":
        module = sys.argv[2]
        sys.argv = [sys.argv[0], *sys.argv[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0
    from layerlab.cli.main import main as layerlab

    return layerlab()


if __name__ == "__main__":
    sys.exit(main())
