"""A test PKI made at start: the simulator's CA, its server certificate, client certificates.

Built with ``cryptography`` (PyCA). Nothing here is a secret of the vendor's: the keys are
made for one run, on loopback, and written only to the run's credentials folder (the
folder a vendor's software is pointed at to present its test client certificate; the
demo vendor reads it). Keys never reach evidence: only certificates do.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "ca.pem"
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"
CLIENT_CERT, CLIENT_KEY = "client.pem", "client.key"
DAY = dt.timedelta(days=1)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _key() -> rsa.RSAPrivateKey:
    # RSA, as the health-sector PKI (IGC-Santé) issues
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str, org: str = "Harness DMP simulator (test)") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@dataclass
class Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey


class TestCA:
    """A certification authority for one run."""

    def __init__(self, name: str = "Harness test CA") -> None:
        self.key = _key()
        now = _now()
        self.cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name)).public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number()).not_valid_before(now - DAY).not_valid_after(now + 365 * DAY)
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                                  key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))

    def issue(self, cn: str, *, server: bool = False, not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
              org: str = "Harness DMP simulator (test)", key: rsa.RSAPrivateKey | None = None) -> Issued:
        key = key or _key()
        now = _now()
        builder = (x509.CertificateBuilder().subject_name(_name(cn, org)).issuer_name(self.cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(not_before or now - DAY)
                   .not_valid_after(not_after or now + 90 * DAY)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                            critical=False)
        return Issued(builder.sign(self.key, hashes.SHA256()), key)

    def write(self, folder: Path, server: Issued, client: Issued | None) -> None:
        """The credentials folder: the CA, the server's certificate and key (the simulator's),
        and the client certificate and key a vendor's software presents."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CA_FILE).write_bytes(pem(self.cert))
        (folder / SERVER_CERT).write_bytes(pem(server.cert) + pem(self.cert))
        write_private(folder / SERVER_KEY, key_pem(server.key))
        if client is not None:
            (folder / CLIENT_CERT).write_bytes(pem(client.cert))
            write_private(folder / CLIENT_KEY, key_pem(client.key))


def write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


def describe(der: bytes) -> dict:
    """What a verifier needs to know of a certificate: subject, issuer, validity, serial,
    SHA-256 fingerprint."""
    cert = x509.load_der_x509_certificate(der)
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "not_before": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "serial": format(cert.serial_number, "x"), "sha256": hashlib.sha256(der).hexdigest()}


def issued_by(cert: x509.Certificate, issuers: list[x509.Certificate]) -> bool:
    for ca in issuers:
        try:
            cert.verify_directly_issued_by(ca)
            return True
        except (ValueError, TypeError, InvalidSignature):  # another issuer's name, key or signature
            continue
    return False
