"""The API other apps use: the switch that opens the HTTP front on a head's engine from the
window, and the rules it shares with `layerlab serve`.

`create_front(head, key)` (core/front_routes.py) is the app `layerlab serve` runs and the one
the window's switch runs here, so both follow one set of rules: nothing listens until it is
turned on, it listens on loopback unless the person chooses their network, an address on the
network needs an API key (`bind_problem`), and every route but /health wants that key. Routes
and payloads are the engine's own; a lost worker or a dead engine becomes an API error and a
/health that says what happened, never a dead process.

This module and front_routes sit below the head (the head holds an `ApiFront`), so they know
the head only by the few things they read from it (`HeadLike`) and import nothing above the
engine.

The window's key is made once and kept out of plain files: in the system keyring where the
`keyring` package is installed and has a working backend, else in a file only this user can
read (0600) in LayerLab's config directory. It is never written to settings.json or a log.
"""

from __future__ import annotations

import errno
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import platformdirs

from layerlab.core.endpoint import BadAddress, Endpoint
from layerlab.core.secret_store import SecretStore, SecretUnreachable

DEFAULT_PORT = 8080
KEYRING_ENTRY = "api-key"
KEY_FILE_NAME = "api-key"


class HeadLike(Protocol):
    """What the front reads from the head (core/head/head.py's Head)."""

    supervisor: Any  # .state (an EngineState), .token
    incidents: list  # Incident: .message, .lost_workers

    def health(self) -> tuple[int, dict]: ...


def bind_problem(host: str, port: int, key: str | None) -> str:
    """Why the API may not listen on host:port with this key ("" when it may): an address
    other apps on the network can reach needs a key, or anyone there could use the model."""
    try:
        loopback = Endpoint.parse(f"{host}:{port}").is_loopback
    except BadAddress as e:
        return str(e)
    if not loopback and not key:
        return (
            f"Listening on {host} makes the API reachable from your network, so it needs an "
            "API key: without one anyone there could use the model."
        )
    return ""


# -- the key ---------------------------------------------------------------------------------


class ApiKeyStore:
    """The window's API key: made once, then the same on every start, kept in the system
    keyring when there is one that works, else in a 0600 file in LayerLab's config dir."""

    def __init__(self, directory: Path | None = None, use_keyring: bool = True):
        self.file = (directory or Path(platformdirs.user_config_dir("layerlab"))) / KEY_FILE_NAME
        self._secret = SecretStore(self.file, KEYRING_ENTRY, use_keyring)
        self._key: str | None = None
        self.where = ""  # where the key is kept, in words, once read
        self._lock = threading.Lock()

    def key(self) -> str:
        """The key, made and kept the first time (blocking: a keyring may ask D-Bus).
        Raises OSError when it can be neither read nor kept."""
        with self._lock:
            if self._key is None:
                self._key = self._read() or self._keep(secrets.token_urlsafe(24))
            return self._key

    def renew(self) -> str:
        """A new key (the old one stops working at the next start)."""
        with self._lock:
            self._key = self._keep(secrets.token_urlsafe(24))
            return self._key

    def _read(self) -> str:
        found = self._secret.get() or ""
        if found:
            self.where = self._secret.where
        return found

    def _keep(self, key: str) -> str:
        self.where = self._secret.set(key)
        return key


# -- the switch ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiStatus:
    """What the window shows about the API."""

    on: bool
    lan: bool = False
    port: int = DEFAULT_PORT
    url: str = ""  # the base URL other apps paste, ending in /v1
    key: str = ""
    problem: str = ""  # what went wrong, in words: why it is off, or what an "on" lacks


def lan_address() -> str:
    """This machine's address on the network (the one its default route leaves by)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # a documentation address: no packet is sent
            return s.getsockname()[0]
        except OSError:
            return socket.gethostname()


class ApiFront:
    """The head's API for other apps, as the window's switch turns it on and off. Nothing
    listens until `start`; `start` and `stop` block (run them off the GUI thread)."""

    def __init__(
        self,
        head: HeadLike,
        key_store: ApiKeyStore | None = None,
        *,
        state_dir: Path | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.head = head
        # A head with its own state dir (tests, a second head) keeps its key there, not in
        # the person's keyring.
        self.keys = key_store or (
            ApiKeyStore(state_dir, use_keyring=False) if state_dir else ApiKeyStore()
        )
        self._log = log or (lambda message: None)
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._status = ApiStatus(on=False)

    @property
    def status(self) -> ApiStatus:
        return self._status

    def start(
        self, lan: bool = False, port: int = DEFAULT_PORT, key: str | None = None
    ) -> ApiStatus:
        """Listen on loopback, or on every address when `lan`; with the kept key unless one
        is given. Stops a running one first (a new address or port)."""
        self.stop()
        host = "0.0.0.0" if lan else "127.0.0.1"
        kept = ""
        if key is None:
            try:
                key = self.keys.key()
            except SecretUnreachable as e:
                # the key the person's apps use may be in there: a new one would lock them out
                why = (
                    f"LayerLab could not read its API key: {e.strerror or e}. The key your apps "
                    "use is kept there; turn the API on again once the keyring answers."
                )
                return self._set(ApiStatus(False, lan, port, problem=why))
            except OSError as e:
                where = f" in {e.filename}" if e.filename else ""
                key, kept = "", f"LayerLab could not keep an API key{where}: {e.strerror or e}. "
        problem = bind_problem(host, port, key)
        if problem:
            return self._set(ApiStatus(False, lan, port, problem=kept + problem))
        # as `serve` does on loopback: a key for this run when none could be kept
        key = key or secrets.token_urlsafe(24)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            why = (
                f"Port {port} is already in use by another program: choose another port."
                if e.errno in (errno.EADDRINUSE, 10048)
                else f"Could not listen on port {port}: {e.strerror or e}."
            )
            return self._set(ApiStatus(False, lan, port, problem=why))
        import uvicorn  # here, not at the top: the window starts without the web stack

        from layerlab.core.front_routes import create_front

        config = uvicorn.Config(
            create_front(self.head, key),
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
            lifespan="off",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="api-front", daemon=True
        )
        thread.start()
        while not server.started and thread.is_alive():
            thread.join(0.02)
        if not server.started:
            sock.close()
            return self._set(ApiStatus(False, lan, port, problem="The API could not start."))
        with self._lock:
            self._server, self._thread, self._sock = server, thread, sock
        shown = lan_address() if lan else "127.0.0.1"
        url = f"http://{shown}:{port}/v1"
        self._log(f"the API is open at {url}" + (" to your network" if lan else ""))
        # a key kept nowhere changes at the next start: the apps it is pasted into must
        # be told again, so the person hears it now, not then
        lacks = kept + "This key works until LayerLab closes." if kept else ""
        return self._set(ApiStatus(True, lan, port, url, key, problem=lacks))

    def stop(self) -> ApiStatus:
        """Stop listening (answers still running are cut after 2 s)."""
        with self._lock:
            server, thread, sock = self._server, self._thread, self._sock
            self._server = self._thread = self._sock = None
        if server is not None:
            server.should_exit = True
            if thread is not None:
                thread.join(10)
            self._log("the API is closed")
        if sock is not None:
            sock.close()
        s = self._status
        return self._set(ApiStatus(False, s.lan, s.port))

    def close(self) -> None:
        self.stop()

    def _set(self, status: ApiStatus) -> ApiStatus:
        self._status = status
        return status
