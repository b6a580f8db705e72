"""A worker that resets the connection as soon as it is made (killed just then, a firewall,
something else on the port): the head hears it in words and keeps no socket open.

Python 3.11's ssl wrap_socket, around a socket whose peer has reset, re-raises without
closing the socket it made; the head's link used to wrap a connected socket that way and
leaked one every time (197 of 200 here), found as a ResourceWarning on CI."""

from __future__ import annotations

import contextlib
import gc
import socket
import struct
import threading
import warnings

import pytest

from layerlab.core.cluster.link_client import open_link, presented_fingerprint
from layerlab.core.cluster.link_protocol import LinkError
from layerlab.core.endpoint import Endpoint

TRIES = 20


@pytest.fixture
def resetting_port():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            # linger 0: close sends a reset, not a goodbye
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    # close() alone does not wake an accept() blocked in another thread (Linux): the thread
    # stayed blocked on a number the next socket opened would be given
    with contextlib.suppress(OSError):
        srv.shutdown(socket.SHUT_RDWR)
    srv.close()
    t.join(5)
    assert not t.is_alive()


def _unclosed_sockets(attempt) -> list[str]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(TRIES):
            with pytest.raises(LinkError) as e:
                attempt()
            assert e.value.problem  # said in words
            gc.collect()
    return [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)]


def test_reading_a_key_from_a_port_that_resets_closes_every_socket(resetting_port):
    where = Endpoint("127.0.0.1", resetting_port)
    assert _unclosed_sockets(lambda: presented_fingerprint(where, 2)) == []


def test_opening_a_link_to_a_port_that_resets_closes_every_socket(resetting_port, make_head):
    identity, _ = make_head()
    from layerlab.core.cluster.identity import Peer

    peer = Peer("0" * 64, "bench-box", identity.cert_pem.decode(), f"127.0.0.1:{resetting_port}", 0)
    assert _unclosed_sockets(lambda: open_link(identity, peer, "status", 2)) == []
