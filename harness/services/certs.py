"""Certificate helpers shared by the services kit (the HTTP base describes a client's
certificate; the test PKI makes and checks them)."""
from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any, Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


KEY_SIZE = 2048  # RSA, as IGC-Santé's certificates (IGC-Santé – Gabarits)
_AHEAD: list[rsa.RSAPrivateKey] = []


def new_key() -> rsa.RSAPrivateKey:
    """A new RSA key: one made ahead (:func:`make_keys_ahead`) while any is left, else made now."""
    if _AHEAD:
        return _AHEAD.pop()
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)


def make_keys_ahead(count: int) -> None:
    """``count`` keys made now, handed out by :func:`new_key` until none is left: for a process
    that forks many short runs of the loopback PKI (the test suite's fork server), whose runs
    then share these keys instead of each making its own (a key takes 50 ms of CPU, a DMP run
    makes 15). Each run's keys are still distinct from one another; a harness run never calls it."""
    _AHEAD.extend(rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE) for _ in range(count))


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def write_private(path: Path, data: bytes) -> None:
    """A key file readable by its owner only, from its creation on."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


def name(cn: str, org: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def describe(der: bytes) -> dict:
    """What a verifier needs to know of a certificate: subject, issuer, validity, serial,
    SHA-256 fingerprint."""
    cert = x509.load_der_x509_certificate(der)
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "not_before": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "serial": format(cert.serial_number, "x"), "sha256": hashlib.sha256(der).hexdigest()}


def issued_by(cert: x509.Certificate, issuers: Iterable[x509.Certificate]) -> x509.Certificate | None:
    """The issuer among ``issuers`` whose key signed ``cert``, or None."""
    for ca in issuers:
        try:
            cert.verify_directly_issued_by(ca)
            return ca
        except (ValueError, TypeError, InvalidSignature):  # another issuer's name, key or signature
            continue
    return None
