"""A plain llama.cpp rpc-server (no LayerLab status port), as someone else's machine runs it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ControlledProcess

SERVE = """
import sys
from layerlab.core import ggml_lib
ggml_lib.start_rpc_server(sys.argv[1], [ggml_lib.cpu_device()], None, 1)
"""


class PlainRpcServer(ControlledProcess):
    """ggml's own RPC server on loopback, started through our ctypes binding: it answers
    RPC and nothing else (no status document)."""

    def __init__(self, port: int, tmp: Path):
        self.port = port
        self.endpoint = f"127.0.0.1:{port}"
        self.log = tmp / f"plain-rpc-{port}.log"
        self._log_file = open(self.log, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, self.endpoint],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rpc-server exited: {self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"rpc-server did not start: {self.log.read_text()}")

    def stop(self) -> None:
        self.end()
        self._log_file.close()
