"""The link's TLS 1.3 contexts: certificates pinned both ways (Python's ssl / OpenSSL).

The worker always presents its certificate and checks a head's against the heads it has
paired; a head checks the worker's against the one it pinned at pairing. A head without a
certificate may only pair. No crypto of our own.
"""

from __future__ import annotations

import ssl

from layerlab.core.cluster.identity import Identity


def _base(side: int, identity: Identity | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(side)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if identity is not None:
        ctx.load_cert_chain(identity.cert_path, identity.key_path)
    # Pinned self-signed certificates are their own trust anchors.
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


def server_context(identity: Identity, trusted_head_pems: list[str]) -> ssl.SSLContext:
    ctx = _base(ssl.PROTOCOL_TLS_SERVER, identity)
    # OPTIONAL: a head without a certificate may pair; one with a certificate must be paired.
    ctx.verify_mode = ssl.CERT_OPTIONAL
    if trusted_head_pems:
        ctx.load_verify_locations(cadata="".join(trusted_head_pems))
    ctx.num_tickets = 0  # no resumption: every session is a full, fresh handshake
    return ctx


def client_context(identity: Identity | None, pinned_pem: str | None) -> ssl.SSLContext:
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT, identity)
    ctx.check_hostname = False  # the pinned certificate is the name
    if pinned_pem:
        ctx.load_verify_locations(cadata=pinned_pem)
    else:
        ctx.verify_mode = ssl.CERT_NONE  # pairing or a key check only; never carries RPC
    return ctx
