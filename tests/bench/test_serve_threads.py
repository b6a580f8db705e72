"""`layerlab serve --threads N`: the count is part of the plan it loads; a count below one is
refused in words before anything loads."""

from __future__ import annotations

import subprocess
import sys


def test_serve_refuses_a_thread_count_below_one_in_words():
    out = subprocess.run(
        [sys.executable, "-m", "layerlab.cli.main", "serve", "--threads", "0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "--threads must be 1 or more, not 0" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr
