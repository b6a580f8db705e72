"""The engine process: `python -m layerlab.core.engine.host` (started by the supervisor).

Reads a LoadPlan as JSON on stdin and the API token from the environment, probes the
plan's workers in pure Python, loads the model, then serves the API on 127.0.0.1. Events
(progress, placement, ready, failure) go to stdout as JSON lines; logs go to stderr.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import socket
import sys
import threading
import time

from layerlab.core.cluster.worker_check import probe
from layerlab.core.engine import events
from layerlab.core.engine.llama_log import LlamaLog, load_failure_words
from layerlab.core.load_plan import LoadPlan

_out_lock = threading.Lock()


def emit(event: events.EngineEvent) -> None:
    with _out_lock:
        sys.stdout.write(events.encode(event) + "\n")
        sys.stdout.flush()


def install_log_capture(log: LlamaLog) -> object:
    """Route llama.cpp's log (every level: layer placement is logged at DEBUG) into `log`."""
    import llama_cpp.llama_cpp as low

    @low.llama_log_callback
    def callback(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        log.feed(text.decode("utf-8", "replace"), level)

    low.llama_log_set(callback, ctypes.c_void_p(0))
    return callback  # the caller keeps it alive


def check_workers(plan: LoadPlan) -> None:
    """llama.cpp aborts on an unreachable or mismatched worker: ask each one first."""
    for endpoint in plan.workers:
        result = probe(endpoint)
        if not result.ok:
            emit(events.LoadFailed(result.problem, worker=endpoint))
            sys.exit(3)


def parent_alive(parent_pid: int) -> bool:
    if os.name == "nt":  # Windows never re-parents an orphan: getppid() keeps the dead id
        import psutil

        return psutil.pid_exists(parent_pid)
    return os.getppid() == parent_pid


def end_with_parent(parent_pid: int, interval: float = 0.5) -> None:
    """Exit when the process that started us is gone (killed, crashed, closed without
    stopping us): an orphaned engine would hold the model's memory and a port forever."""

    def watch() -> None:
        while True:
            if not parent_alive(parent_pid):
                os._exit(0)
            time.sleep(interval)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    token = os.environ.pop(events.TOKEN_ENV, "")
    if not token:
        print("engine: no API token given", file=sys.stderr)
        return 2
    parent = os.environ.pop(events.PARENT_ENV, "")
    if parent.isdigit():
        end_with_parent(int(parent))
    plan = LoadPlan.from_json(sys.stdin.read())

    emit(events.Progress(0.0, "checking workers"))
    check_workers(plan)

    emit(events.Progress(0.0, "loading"))
    log = LlamaLog(echo=lambda text: (sys.stderr.write(text), sys.stderr.flush()))
    keep = install_log_capture(log)  # noqa: F841 (must stay referenced)
    from layerlab.core import ggml_lib

    ggml_lib.lib()  # an installer's llama.cpp loads its backend modules here, logged above

    from layerlab.core.engine.model_session import ModelSession

    session = ModelSession(plan, log)
    last = [0.0]

    def on_progress(fraction: float) -> None:
        now = time.monotonic()
        if fraction >= 1.0 or now - last[0] > 0.05:
            last[0] = now
            emit(events.Progress(fraction))

    t_load = time.perf_counter()
    try:
        placement = session.load(on_progress)
    except Exception as e:  # a clean llama.cpp failure (bad file, split mode ROW, ...)
        # The exception says only "Failed to load model from file: PATH"; llama.cpp's log
        # says why.
        emit(events.LoadFailed(load_failure_words(log.errors(), str(e))))
        return 4
    from layerlab.core.engine.loaded import compare, planned

    loaded = session.loaded()
    notes, refusals = compare(planned(plan), loaded)
    if refusals:  # the plan's memory and placement would not be what runs
        emit(events.LoadFailed(" ".join([*refusals, "The load was stopped."])))
        return 5
    emit(placement)
    log.settle()  # what the load logged is read; later lines are kept for a while only

    import uvicorn

    from layerlab.core.engine.api import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)  # connections wait in the backlog until uvicorn serves them
    port = sock.getsockname()[1]
    model_id = session.model_id
    app = create_app(session, token, model_id)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    emit(
        events.Ready(
            url=f"http://127.0.0.1:{port}",
            model=model_id,
            n_ctx=loaded["n_ctx"],
            load_s=time.perf_counter() - t_load,
            loaded=loaded,
            notes=notes,
        )
    )
    server.run(sockets=[sock])
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip llama.cpp's teardown: with a lost worker it aborts; the OS frees everything.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
