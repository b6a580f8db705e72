"""Fixtures for the cluster: sharing workers, head identities, and network namespaces as hosts.

Namespaces (iproute2) give the tests separate machines on this one: a switch namespace with a
bridge, and one namespace per host joined to it by a veth pair, on 10.231.0.0/24 (inside these
namespaces only: nothing here routes anywhere else). They are removed at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerlab.core.cluster.identity import Identity, TrustStore, load_or_create_identity
from layerlab.core.cluster.worker_events import read_line
from tests.conftest import ControlledProcess, free_port_pair

REPO = Path(__file__).resolve().parents[2]


class SharingWorker(ControlledProcess):
    """A real `layerlab worker --share`, optionally inside a network namespace."""

    def __init__(
        self,
        tmp: Path,
        name: str,
        share_on: str,
        rpc_port: int | None = None,
        netns: str | None = None,
        announce: bool = False,
        state_dir: Path | None = None,
    ):
        self.name = name
        self.share_on = share_on
        self.netns = netns
        self.state_dir = state_dir or tmp / f"worker-{name}"
        self.rpc_port = rpc_port or free_port_pair()
        self.events: list[dict] = []
        self.text: list[str] = []
        self._cv = threading.Condition()
        cmd = [
            sys.executable,
            "-m",
            "layerlab.cli.main",
            "worker",
            "--listen",
            f"127.0.0.1:{self.rpc_port}",
            "--threads",
            "1",
            "--cache-dir",
            "",
            "--share",
            "--share-on",
            share_on,
            "--name",
            name,
            "--state-dir",
            str(self.state_dir),
            "--json-events",
        ]
        if not announce:
            cmd.append("--no-announce")
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_event("pairing_code", timeout=30)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cv:
                self.text.append(line)
                event = read_line(line.strip())[1]
                if event is not None:
                    self.events.append(event)
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_event(self, kind: str, timeout: float = 10, after: int = 0) -> dict:
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for e in self.events[after:]:
                    if e.get("event") == kind:
                        return e
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise TimeoutError(f"no {kind!r} from worker {self.name}: {''.join(self.text)}")
                self._cv.wait(min(left, 0.2))

    @property
    def code(self) -> str:
        with self._cv:
            return [e["code"] for e in self.events if e.get("event") == "pairing_code"][-1]

    def wait_new_code(self, old: str, timeout: float = 5) -> str:
        deadline = time.monotonic() + timeout
        while self.code == old:
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {self.name} still shows {old}")
            time.sleep(0.05)
        return self.code

    @property
    def fingerprint(self) -> str:
        return self.wait_event("sharing")["fingerprint"]

    @property
    def address(self) -> str:
        return self.wait_event("sharing")["address"]

    def stop(self) -> None:
        self.end()
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def share_switch_args(state: Path, lan_port: int) -> list[str]:
    """What the tests give the window's ShareProcess: one thread, no cache, loopback only."""
    return [
        "--listen",
        f"127.0.0.1:{free_port_pair()}",
        "--threads",
        "1",
        "--cache-dir",
        "",
        "--share-on",
        f"127.0.0.1:{lan_port}",
        "--name",
        "bench-box",
        "--no-announce",
        "--state-dir",
        str(state),
    ]


@pytest.fixture
def start_sharing(tmp_path: Path) -> Iterator:
    started: list[SharingWorker] = []

    def start(name: str = "bench-box", **kw) -> SharingWorker:
        kw.setdefault("share_on", f"127.0.0.1:{free_port_pair()}")
        w = SharingWorker(tmp_path, name, **kw)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def make_head(tmp_path: Path):
    def make(name: str = "desk") -> tuple[Identity, TrustStore]:
        d = tmp_path / f"head-{name}"
        return load_or_create_identity(d, name), TrustStore(d)

    return make


# -- network namespaces ---------------------------------------------------------------------
def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class Lan:
    """A switch namespace with a bridge, and hosts joined to it: host name -> 10.231.0.N."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.switch = f"{prefix}-sw"
        self.hosts: dict[str, str] = {}
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
        _ip("-n", self.switch, "link", "set", "br0", "up")

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def add_host(self, host: str) -> str:
        ns, n = self.ns(host), len(self.hosts) + 10
        ip = f"10.231.0.{n}"
        _ip("netns", "add", ns)
        inner, outer = f"h{n}", f"s{n}"
        _ip(
            "-n",
            self.switch,
            "link",
            "add",
            outer,
            "type",
            "veth",
            "peer",
            "name",
            inner,
            "netns",
            ns,
        )
        _ip("-n", self.switch, "link", "set", outer, "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", inner)
        _ip("-n", ns, "link", "set", inner, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        self.hosts[host] = ip
        return ip

    def cable(self, host: str, up: bool) -> None:
        """Pull (or plug back) the host's cable at the switch: both ends stay up, nothing flows."""
        n = list(self.hosts).index(host) + 10
        _ip("-n", self.switch, "link", "set", f"s{n}", "up" if up else "down")

    def remove(self) -> None:
        for host in list(self.hosts):
            # Whatever a failed test left running in our namespaces (all started by us).
            for pid in _ip("netns", "pids", self.ns(host), check=False).stdout.split():
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", self.ns(host), check=False)
        _ip("netns", "del", self.switch, check=False)


@pytest.fixture(scope="module")
def lan() -> Iterator[Lan]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add)")
    prefix = f"ll{os.getpid() % 100000}"
    try:
        net = Lan(prefix)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        pytest.skip(f"'ip netns' is not permitted here: {getattr(e, 'stderr', e)}")
    try:
        yield net
    finally:
        net.remove()


class HeadAgent:
    """tests/cluster/head_agent.py running inside a host namespace; one JSON line each way."""

    def __init__(self, netns: str, state_dir: Path, name: str = "desk"):
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                netns,
                sys.executable,
                str(REPO / "tests/cluster/head_agent.py"),
                str(state_dir),
                name,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )

    def __call__(self, cmd: str, **args) -> dict:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"head agent died during {cmd}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"head agent: {cmd}: {reply['error']}")
        return reply

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self("exit")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
