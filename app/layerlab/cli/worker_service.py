"""`layerlab worker --install-service`: the worker as a systemd user service, started at
log-in and restarted when it fails, with the same worker options as given on the command line.

Only Linux with systemd has this; elsewhere the person is told so (Windows: start the worker
from the Share screen)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

UNIT = "layerlab-worker.service"
# Options that belong to installing, not to the worker the service runs.
_NOT_FOR_THE_SERVICE = {"--install-service", "--uninstall-service"}


def unit_path() -> Path:
    return Path.home() / ".config" / "systemd" / "user" / UNIT


def program() -> list[str]:
    """How to start this very LayerLab: the frozen executable, or this Python and its module."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "layerlab.cli.main"]


def unit_text(worker_args: list[str]) -> str:
    def quoted(a: str) -> str:
        return f'"{a}"' if any(c in a for c in ' "\\') else a

    command = " ".join(quoted(a) for a in [*program(), "worker", *worker_args])
    return (
        "[Unit]\n"
        "Description=LayerLab worker (shares this machine's GPUs with a LayerLab head)\n"
        "After=network-online.target\n\n"
        "[Service]\n"
        f"ExecStart={command}\n"
        "Restart=on-failure\n"
        "RestartSec=5\n\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def _systemctl(*args: str) -> tuple[int, str]:
    try:
        done = subprocess.run(
            ["systemctl", "--user", *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return 1, str(e)
    return done.returncode, (done.stderr or done.stdout).strip()


def install(argv: list[str], start: bool = True) -> tuple[int, str]:
    """Write the unit and enable it; (exit code, what to tell the person)."""
    if not sys.platform.startswith("linux") or shutil.which("systemctl") is None:
        return 1, (
            "A worker service needs systemd (Linux). Here, switch on Share in the window, "
            "or run `layerlab worker` yourself."
        )
    worker_args = [a for a in argv if a not in _NOT_FOR_THE_SERVICE]
    path = unit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(unit_text(worker_args), encoding="utf-8")
    if not start:
        return 0, f"Wrote {path}."
    code, out = _systemctl("daemon-reload")
    if code == 0:
        code, out = _systemctl("enable", "--now", UNIT)
    if code != 0:
        return 1, (
            f"Wrote {path}, but systemd could not start it ({out or 'no user session'}). "
            f"Start it with: systemctl --user enable --now {UNIT}"
        )
    return 0, f"The worker runs as a service now and starts when you log in ({path})."


def uninstall() -> tuple[int, str]:
    path = unit_path()
    if shutil.which("systemctl"):
        _systemctl("disable", "--now", UNIT)
    existed = path.exists()
    path.unlink(missing_ok=True)
    if shutil.which("systemctl"):
        _systemctl("daemon-reload")
    return 0, ("The worker service is removed." if existed else "There was no worker service.")
