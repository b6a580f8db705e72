"""The link on loopback: pairing, admission, refusals. Real workers, real TLS, real SPAKE2."""

from __future__ import annotations

import contextlib
import socket
import ssl
import stat
import threading

import pytest

from layerlab.core.cluster import link, rpc_wire
from layerlab.core.cluster.forwarder import LinkForwarder
from layerlab.core.cluster.identity import TrustStore, fingerprint_of_cert, load_or_create_identity
from layerlab.core.cluster.pairing import HeadPairing
from layerlab.core.cluster.worker_check import fetch_status, probe
from layerlab.core.endpoint import Endpoint


def counters(identity, peer) -> dict:
    return link.worker_status(identity, peer).link


def test_pair_then_forwarder_is_a_worker_for_llama_cpp(start_sharing, make_head):
    w = start_sharing("bench-box")
    head, trust = make_head("desk")
    peer = link.pair(head, trust, w.address, w.code, expected_fingerprint=w.fingerprint)
    assert peer.name == "bench-box" and peer.fingerprint == w.fingerprint
    assert trust.worker(w.fingerprint) is not None
    assert w.wait_event("paired")["head"] == "desk"
    # The code is used once: a new one is shown right away.
    assert w.code != w.events[[e.get("event") for e in w.events].index("pairing_code")]["code"]
    with LinkForwarder(head, peer) as fwd:
        result = probe(fwd.endpoint)
        assert result.ok, result.problem
        assert result.version == rpc_wire.RpcVersion(7, 0, 0)
        assert result.status.serving is None and result.status.devices
        assert counters(head, peer)["rpc_sessions"] == 1


def test_secrets_are_readable_by_the_user_alone(start_sharing, make_head):
    w = start_sharing()
    head, trust = make_head()
    link.pair(head, trust, w.address, w.code)
    for d in (w.state_dir, trust.path.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
        for f in d.iterdir():
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    out = "".join(w.text)
    assert "PRIVATE KEY" not in out and "CERTIFICATE" not in out


def test_wrong_code_is_refused_and_the_code_changes_after_three(start_sharing, make_head):
    w = start_sharing()
    head, trust = make_head()
    first = w.code
    wrong = "000-000" if first != "000-000" else "111-111"
    for _ in range(3):
        with pytest.raises(link.LinkError) as e:
            link.pair(head, trust, w.address, wrong)
        assert e.value.kind == "wrong_code"
    assert trust.workers() == []
    w.wait_new_code(first)  # three wrong tries: the old code is dead
    with pytest.raises(link.LinkError):
        link.pair(head, trust, w.address, first)
    link.pair(head, trust, w.address, w.code)


def test_unpaired_head_is_refused_before_any_rpc(start_sharing, make_head):
    w = start_sharing()
    paired, trust = make_head("desk")
    peer = link.pair(paired, trust, w.address, w.code)
    stranger, _ = make_head("stranger")
    for op in ("rpc", "status", "watch"):
        with pytest.raises(link.LinkError) as e:
            link.open_link(stranger, peer, op)
        assert e.value.kind == "not_paired"
    # A head whose key changed (reinstalled) is a stranger too, even with the same name.
    (trust.path.parent / "identity-key.pem").unlink()
    (trust.path.parent / "identity-cert.pem").unlink()
    reinstalled = load_or_create_identity(trust.path.parent, "desk")
    with pytest.raises(link.LinkError) as e:
        link.open_link(reinstalled, peer, "rpc")
    assert e.value.kind == "not_paired"
    w2_head, w2_trust = make_head("auditor")
    auditor = link.pair(w2_head, w2_trust, w.address, w.code)
    c = counters(w2_head, auditor)
    assert c["rpc_sessions"] == 0 and c["handshakes_refused"] >= 4


def test_worker_key_changed_warns_and_does_not_connect(start_sharing, make_head, tmp_path):
    w = start_sharing("bench-box")
    head, trust = make_head()
    peer = link.pair(head, trust, w.address, w.code)
    addr = w.share_on
    w.stop()
    # The same address, a different machine key (reinstalled, or an impostor).
    w2 = start_sharing("bench-box", share_on=addr, state_dir=tmp_path / "other-key")
    with pytest.raises(link.LinkError) as e:
        link.open_link(head, peer, "rpc")
    assert e.value.kind == "key_changed"
    assert "different key" in e.value.problem and "will not connect" in e.value.problem
    with LinkForwarder(head, peer) as fwd:
        assert not probe(fwd.endpoint, timeout=2).ok
        assert fetch_status(Endpoint.parse(fwd.endpoint), 2) is None
        assert fwd.last_problem is not None and fwd.last_problem.kind == "key_changed"
    # Pairing again with the new machine's code replaces the pin.
    peer2 = link.pair(head, trust, addr, w2.code)
    assert peer2.fingerprint == w2.fingerprint != peer.fingerprint
    assert [p.fingerprint for p in trust.workers()] == [w2.fingerprint]


def test_plain_rpc_bytes_to_the_lan_port_reach_nothing(start_sharing, make_head):
    w = start_sharing()
    lan = Endpoint.parse(w.address)
    result = probe(lan, timeout=1.5)  # speaks ggml RPC HELLO straight at the LAN port
    assert not result.ok
    assert not result.version  # not a single answer to HELLO
    with socket.create_connection((lan.host, lan.port), timeout=2) as s:
        s.sendall(b"GET /status HTTP/1.0\r\n\r\n")  # the status document is admitted only
        got = b""
        try:
            while chunk := s.recv(4096):
                got += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        assert b"HTTP" not in got and b"devices" not in got
    head, trust = make_head()
    peer = link.pair(head, trust, w.address, w.code)
    c = counters(head, peer)
    assert c["rpc_sessions"] == 0 and c["handshakes_refused"] >= 2


class Recorder:
    """A plain TCP middlebox that records what the head sends (to replay it later)."""

    def __init__(self, target: Endpoint):
        self.target = target
        self.sent = bytearray()
        self.done = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.endpoint = Endpoint("127.0.0.1", self.sock.getsockname()[1])
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        with self.sock:
            conn, _ = self.sock.accept()
        up = socket.create_connection((self.target.host, self.target.port))

        def copy(a, b, record):
            try:
                while data := a.recv(65536):
                    if record:
                        self.sent += data
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        back = threading.Thread(target=copy, args=(up, conn, False), daemon=True)
        back.start()
        copy(conn, up, True)
        back.join(5)
        conn.close()
        up.close()
        self.done.set()


def test_replayed_handshakes_are_refused(start_sharing, make_head):
    w = start_sharing()
    head, trust = make_head()
    lan = Endpoint.parse(w.address)
    # 1. A recorded pairing, replayed message for message inside a fresh TLS session:
    #    the worker's fresh SPAKE2 secret makes the old confirmation worthless.
    code = w.code
    tls = link.client_context(None, None).wrap_socket(
        socket.create_connection((lan.host, lan.port), timeout=5)
    )
    worker_fp = fingerprint_of_cert(tls.getpeercert(binary_form=True))
    attempt = HeadPairing(code, worker_fp, head.fingerprint)
    first = {
        "op": "pair",
        "name": "desk",
        "link": link.LINK_PROTOCOL,
        "rpc": link.RPC_VERSION,
        "cert": head.cert_pem.decode(),
        **attempt.start(),
    }
    link.send_line(tls, first)
    confirmation = attempt.finish(link.recv_line(tls))
    tls.close()  # the eavesdropped exchange never completed; now replay it
    tls = link.client_context(None, None).wrap_socket(
        socket.create_connection((lan.host, lan.port), timeout=5)
    )
    link.send_line(tls, first)
    link.recv_line(tls)
    link.send_line(tls, confirmation)
    assert link.recv_line(tls)["kind"] == "wrong_code"
    tls.close()
    assert w.wait_event("pairing_failed")
    # 2. A whole recorded RPC session replayed byte for byte: TLS 1.3 refuses it.
    peer = link.pair(head, trust, w.address, w.code)
    rec = Recorder(lan)
    with LinkForwarder(head, peer, address=rec.endpoint) as fwd:
        assert probe(fwd.endpoint).ok
    assert rec.done.wait(5)
    before = counters(head, peer)
    with socket.create_connection((lan.host, lan.port), timeout=5) as s:
        s.sendall(bytes(rec.sent))
        s.settimeout(3)
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    after = counters(head, peer)
    assert after["rpc_sessions"] == before["rpc_sessions"]
    assert after["handshakes_refused"] == before["handshakes_refused"] + 1
    assert b"7.0.0" not in got


def test_second_head_is_told_busy_and_the_first_may_reconnect(start_sharing, make_head):
    w = start_sharing("bench-box")
    a, trust_a = make_head("desk")
    b, trust_b = make_head("laptop")
    peer = link.pair(a, trust_a, w.address, w.code)
    peer_b = link.pair(b, trust_b, w.address, w.code)
    tls, _ = link.open_link(a, peer, "rpc")
    try:
        assert rpc_wire.hello(tls).compatible
        with pytest.raises(link.LinkError) as e:
            link.open_link(b, peer_b, "rpc")
        assert e.value.kind == "busy"
        assert e.value.problem == "bench-box is busy, serving desk."
        assert link.worker_status(b, peer_b).serving == "desk"
    finally:
        tls.close()
    # A head that vanished mid-session (its connection just dropped) frees the worker.
    for _ in range(50):
        if link.worker_status(b, peer_b).serving is None:
            break
        threading.Event().wait(0.05)
    with LinkForwarder(b, peer_b) as fwd:
        assert probe(fwd.endpoint).ok


def test_version_mismatch_is_explained(start_sharing, make_head):
    w = start_sharing("bench-box")
    head, trust = make_head()
    peer = link.pair(head, trust, w.address, w.code)
    with pytest.raises(link.LinkError) as e:
        link.open_link(head, peer, "rpc", extra={"link": 2, "rpc": "8.0.0"})
    assert e.value.kind == "version"
    assert e.value.problem.startswith(
        "bench-box runs LayerLab 0.1.0 with link protocol 1 and "
        "llama.cpp RPC protocol 7.0.0; this head needs"
    )


def test_link_refuses_tls_below_1_3(start_sharing):
    w = start_sharing()
    lan = Endpoint.parse(w.address)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        ctx.wrap_socket(socket.create_connection((lan.host, lan.port), timeout=3))


def test_trust_store_pins_one_key_per_address(tmp_path):
    trust = TrustStore(tmp_path)
    from layerlab.core.cluster.identity import Peer

    trust.add("worker", Peer("a" * 64, "w", "pem", "10.0.0.1:50050"))
    trust.add("worker", Peer("b" * 64, "w", "pem", "10.0.0.1:50050"))
    assert [p.fingerprint for p in trust.workers()] == ["b" * 64]
