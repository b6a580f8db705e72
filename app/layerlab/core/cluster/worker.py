"""`layerlab worker`: share this machine's devices with a head over llama.cpp's RPC.

One process: llama.cpp's RPC server blocks in a daemon thread (ctypes releases the GIL),
a small HTTP status endpoint on the next port tells heads what this worker has and whom
it serves, and the main thread waits for Ctrl+C / SIGTERM. The RPC server has no stop
call, so stopping ends the process with os._exit after closing what we own; the kernel
releases the sockets. A frozen (SIGSTOPped) worker freezes both, which is how a head's
watchdog tells frozen from busy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import platformdirs
import psutil

from layerlab import __version__
from layerlab.core.cluster.status import WorkerStatus
from layerlab.core.endpoint import Endpoint


class WorkerStartError(RuntimeError):
    """The worker cannot start; the message says why in the person's words."""


@dataclass
class WorkerOptions:
    listen: Endpoint
    devices: list[str] | None = None  # ggml device names; None: every GPU, else the CPU
    cache_dir: str | None = None  # None: the default cache; "" turns the cache off
    threads: int | None = None
    allow_lan: bool = False
    # Sharing on the LAN through LayerLab's TLS link (core/cluster/sharing.py); RPC and
    # status then stay on loopback.
    share: object | None = None  # a sharing.ShareOptions
    # The window's share switch starts the worker as its child, with a pipe on stdin: when
    # the window goes (quit, crash, kill -9) the pipe closes, and the worker stops sharing
    # with it instead of going on unseen. The service and a terminal's worker leave it off.
    end_with_stdin: bool = False


def default_cache_dir() -> str:
    return str(Path(platformdirs.user_cache_dir("layerlab")) / "rpc-tensor-cache")


def check_listen_address(ep: Endpoint, allow_lan: bool) -> None:
    if not ep.is_loopback and not allow_lan:
        raise WorkerStartError(
            f"{ep.host} is not a loopback address. llama.cpp's RPC has no authentication and no "
            "encryption, so LayerLab only shares on the LAN when you say so: add --allow-lan."
        )


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise WorkerStartError(
                f"Cannot listen on {host}:{port}: {e.strerror or e}. Is another worker already "
                "using it? Pick another port with --listen."
            ) from None


def serving_peer(rpc_port: int) -> str | None:
    """The head this worker is serving now ('ip:port'), read from this process's sockets."""
    try:
        conns = psutil.Process().net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for c in conns:
        if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == rpc_port and c.raddr:
            return f"{c.raddr.ip}:{c.raddr.port}"
    return None


class StatusDocument:
    """What the status endpoint answers; device memory is read fresh on every request."""

    def __init__(self, listen: Endpoint, device_handles: list[int]):
        self.listen = listen
        self.device_handles = device_handles
        from layerlab.core.cluster.telemetry import LocalTelemetry  # the heads' gauges

        self.telemetry = LocalTelemetry()

    def build(self) -> WorkerStatus:
        from layerlab.core import ggml_lib

        devices = []
        vm = psutil.virtual_memory()
        for i, h in enumerate(self.device_handles):
            d = ggml_lib.describe(h)
            free, total = d.free, d.total
            if d.type == "cpu":
                # ggml's CPU device reports free = total = physical RAM (FACTS.md).
                free, total = vm.available, vm.total
            devices.append(
                {
                    "index": i,
                    "name": d.name,
                    "description": d.description,
                    "type": d.type,
                    "free": free,
                    "total": total,
                    "device_id": d.device_id,
                }
            )
        return WorkerStatus.model_validate(
            {
                "layerlab": __version__,
                "rpc_protocol": "7.0.0",
                "hostname": socket.gethostname(),
                "rpc_port": self.listen.port,
                "serving": serving_peer(self.listen.port),
                "devices": devices,
                "host_memory": {"total": vm.total, "available": vm.available},
                "telemetry": self.telemetry.read(devices),
                "time": time.time(),
            }
        )


class _StatusServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: tuple) -> None:
        """socketserver prints a traceback for any error in a request; ours are words."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return  # a head that gave up waiting or vanished mid-answer: nobody to tell
        print(
            f"LayerLab worker: a status request from {client_address[0]} failed ({error}).",
            file=sys.stderr,
            flush=True,
        )


def _status_handler(doc: StatusDocument) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/status":
                self.send_error(404)
                return
            body = doc.build().to_json()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # polled every second by heads; not worth a log line each

    return Handler


def choose_devices(names: list[str] | None) -> list[int]:
    from layerlab.core import ggml_lib

    if names:
        out = []
        for n in names:
            if n.lower() == "cpu":
                out.append(ggml_lib.cpu_device())
            else:
                try:
                    out.append(ggml_lib.device_by_name(n))
                except LookupError as e:
                    known = ", ".join(d.name for d in ggml_lib.local_devices())
                    raise WorkerStartError(f"{e}. Devices here: {known}.") from None
        return out
    gpus = [d.handle for d in ggml_lib.local_devices() if d.type == "gpu"]
    return gpus or [ggml_lib.cpu_device()]


def run_worker(opts: WorkerOptions, out=sys.stdout) -> int:
    """Run until SIGINT/SIGTERM. Returns only on a start error (raised as WorkerStartError)."""
    ep = opts.listen
    check_listen_address(ep, opts.allow_lan)
    check_port_free(ep.host, ep.port)
    check_port_free(ep.host, ep.status_port)
    if not ep.is_loopback:
        print(
            f"WARNING: sharing on {ep} makes this machine's GPUs usable by anyone who can reach "
            "that address. llama.cpp's RPC has no password and no encryption; use it only on a "
            "network you trust.",
            file=out,
            flush=True,
        )
    from layerlab.core import ggml_lib

    devices = choose_devices(opts.devices)
    cache_dir = default_cache_dir() if opts.cache_dir is None else (opts.cache_dir or None)
    if cache_dir:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    threads = opts.threads or max(1, os.cpu_count() or 1)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if opts.end_with_stdin:

        def until_the_app_goes() -> None:
            with contextlib.suppress(OSError, ValueError):
                while sys.stdin.buffer.read(4096):
                    pass
            stop.set()

        threading.Thread(target=until_the_app_goes, name="app-watch", daemon=True).start()

    # One document for both roads (plain HTTP here, the link's status session when sharing).
    document = StatusDocument(ep, devices)
    status = _StatusServer((ep.host, ep.status_port), _status_handler(document))
    threading.Thread(target=status.serve_forever, name="worker-status", daemon=True).start()

    failed = threading.Event()

    def serve() -> None:
        ggml_lib.start_rpc_server(str(ep), devices, cache_dir, threads)
        failed.set()  # start_server only returns when it could not start
        stop.set()

    threading.Thread(target=serve, name="rpc-server", daemon=True).start()
    if not _wait_listening(ep.port, failed, timeout=10):
        status.server_close()
        raise WorkerStartError(
            f"llama.cpp's RPC server did not start on {ep} (see messages above)."
        )
    names = ", ".join(ggml_lib.describe(d).name for d in devices)
    sharing = None
    if opts.share is not None:
        from layerlab.core.cluster.sharing import Sharing

        sharing = Sharing(opts.share, ep, document.build, out)
        try:
            sharing.start()
        except OSError as e:
            status.server_close()
            raise WorkerStartError(
                f"Cannot share on {opts.share.address}: {e.strerror or e}."
            ) from None
    if sharing is None or not opts.share.json_events:
        print(
            f"LayerLab worker ready on {ep} (devices: {names}; status on port {ep.status_port}; "
            f"tensor cache: {cache_dir or 'off'})",
            file=out,
            flush=True,
        )
    stop.wait()
    if sharing is not None:
        sharing.close()
    if failed.is_set():
        status.server_close()
        raise WorkerStartError(f"llama.cpp's RPC server stopped on {ep}.")
    print("LayerLab worker stopping.", file=out, flush=True)
    status.shutdown()
    status.server_close()
    out.flush()
    sys.stderr.flush()
    # The RPC thread is blocked in C with no stop call; ending the process is the clean stop.
    os._exit(0)


def _wait_listening(port: int, failed: threading.Event, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    me = psutil.Process()
    while time.monotonic() < deadline and not failed.is_set():
        try:
            for c in me.net_connections(kind="tcp"):
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port:
                    return True
        except (psutil.Error, OSError):
            pass
        time.sleep(0.02)
    return False
