"""Who this machine is on the LAN link, and whom it trusts.

Every LayerLab machine has one long-lived key pair with a self-signed certificate (ECDSA
P-256, made with `cryptography`). The certificate is what TLS presents; its fingerprint
(SHA-256 of the public key, so a re-issued certificate keeps it) is what mDNS announces and
what pairing pins. The trust store lists the certificates of paired peers: heads a worker
admits, workers a head connects to.

Secrets live in files that only this user can read (0600, in a 0700 folder), written
atomically. Nothing here logs a key, a code or a certificate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from layerlab.core.atomic_file import write_atomic

# cryptography's x509 (~45 ms) is imported where a certificate is read or made: the window's
# start imports this module for Peer and the trust store, and reads no certificate.

KEY_FILE = "identity-key.pem"
CERT_FILE = "identity-cert.pem"
TRUST_FILE = "trust.json"


def default_state_dir() -> Path:
    return Path(platformdirs.user_config_dir("layerlab")) / "cluster"


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write a secret atomically, readable by this user alone (0600) from the first byte."""
    private_dir(path.parent)
    write_atomic(path, data, mode=0o600)


def fingerprint_of_cert(cert_der_or_pem: bytes) -> str:
    """SHA-256 over the certificate's SubjectPublicKeyInfo, as 64 lowercase hex digits."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if cert_der_or_pem.lstrip().startswith(b"-----"):
        cert = x509.load_pem_x509_certificate(cert_der_or_pem)
    else:
        cert = x509.load_der_x509_certificate(cert_der_or_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def short_fingerprint(fp: str) -> str:
    """What a person compares by eye: 'a1b2 c3d4 e5f6 a7b8'."""
    return " ".join(fp[i : i + 4] for i in range(0, 16, 4))


@dataclass(frozen=True)
class Identity:
    name: str
    key_pem: bytes
    cert_pem: bytes
    key_path: Path  # ssl.load_cert_chain reads files; this one is 0600
    cert_path: Path

    @property
    def fingerprint(self) -> str:
        return fingerprint_of_cert(self.cert_pem)


def _make_identity(name: str) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"LayerLab {name}"[:64])])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365 * 30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def load_or_create_identity(state_dir: Path, name: str | None = None) -> Identity:
    """This machine's identity; made on first use. `name` only labels a new certificate."""
    state_dir = private_dir(Path(state_dir))
    key_path, cert_path = state_dir / KEY_FILE, state_dir / CERT_FILE
    label = name or socket.gethostname()
    if not (key_path.exists() and cert_path.exists()):
        key_pem, cert_pem = _make_identity(label)
        write_private(key_path, key_pem)
        write_private(cert_path, cert_pem)
    return Identity(label, key_path.read_bytes(), cert_path.read_bytes(), key_path, cert_path)


@dataclass(frozen=True)
class Peer:
    """A paired machine: its name, its pinned certificate, and where it was last seen."""

    fingerprint: str
    name: str
    cert_pem: str
    address: str = ""  # workers: "host:port" of their LAN link endpoint
    paired_at: float = 0.0


class TrustStore:
    """Paired peers, in a 0600 JSON file. Re-read on change, so a worker sees new pairings."""

    def __init__(self, state_dir: Path):
        self.path = private_dir(Path(state_dir)) / TRUST_FILE
        self._lock = threading.Lock()
        self._cached: tuple[tuple[int, int], dict] | None = None

    def _read(self) -> dict:
        # Asked on every Workers-list row and every routed address: parse the file only when
        # its stamp changed (a stat costs microseconds; a read and parse, milliseconds).
        stamp = self.stamp()
        cached = self._cached
        if cached is not None and cached[0] == stamp and stamp != (0, 0):
            return json.loads(json.dumps(cached[1]))  # callers may change what they get
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {"version": 1, "heads": {}, "workers": {}}
        data.setdefault("heads", {})
        data.setdefault("workers", {})
        self._cached = (stamp, data)
        return json.loads(json.dumps(data))

    def _write(self, data: dict) -> None:
        write_private(self.path, json.dumps(data, indent=1, sort_keys=True).encode())

    def stamp(self) -> tuple[int, int]:
        """Changes whenever the file does; lets a server cache its TLS context."""
        try:
            st = self.path.stat()
        except OSError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_size)

    def heads(self) -> list[Peer]:
        return [Peer(**p) for p in self._read()["heads"].values()]

    def workers(self) -> list[Peer]:
        return [Peer(**p) for p in self._read()["workers"].values()]

    def head(self, fingerprint: str) -> Peer | None:
        p = self._read()["heads"].get(fingerprint)
        return Peer(**p) if p else None

    def worker(self, fingerprint: str) -> Peer | None:
        p = self._read()["workers"].get(fingerprint)
        return Peer(**p) if p else None

    def worker_at(self, address: str) -> Peer | None:
        for p in self.workers():
            if p.address == address:
                return p
        return None

    def add(self, role: str, peer: Peer) -> None:
        with self._lock:
            data = self._read()
            group = data["heads" if role == "head" else "workers"]
            if role == "worker":
                # One pinned key per address: a re-pair replaces the old entry.
                for fp in [fp for fp, p in group.items() if p.get("address") == peer.address]:
                    del group[fp]
            group[peer.fingerprint] = peer.__dict__.copy()
            self._write(data)

    def remove(self, role: str, fingerprint: str) -> None:
        with self._lock:
            data = self._read()
            data["heads" if role == "head" else "workers"].pop(fingerprint, None)
            self._write(data)
