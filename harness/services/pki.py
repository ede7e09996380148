"""A test PKI shaped like the health sector's, made at start for one run.

The shape follows the IGC-Santé (ANS, *IGC-Santé – Gabarits des certificats X.509 et des
CRL*, v1.1.0, 2019): a root authority; an intermediate authority that issues the server,
client (organisation) and signing certificates; a delegated OCSP responder certificate of
that intermediate (``id-kp-OCSPSigning``, with ``id-pkix-ocsp-nocheck``); a CRL per
intermediate. The revocation services follow *Bonnes pratiques de vérification de l'état
des certificats* (ANS, v3.0.1, 2017): a certificate names its OCSP responder (Authority
Information Access, RFC 5280 4.2.2.1) and its CRL (CRL Distribution Points, 4.2.1.13); a
relying party asks the responder (RFC 6960), and falls back to the CRL (RFC 5280 5).

The names of the authorities are this harness's (``… (test)``): the national ones are not
copied, no certificate here could pass for one. Keys are RSA 2048 as the IGC-Santé issues.
Nothing here is a vendor's secret: keys are made for one run, written only to the folder a
simulator gives the software (its test client certificate), never to evidence.

:class:`TestPKI` makes the authorities; :meth:`TestPKI.start` serves OCSP and the CRL on
loopback (:class:`RevocationService`, an :class:`~harness.services.http.HttpService` that
records every exchange); :func:`check_revocation` is the relying party's side, bounded in
time, that a simulator runs on a client's certificate.
"""
from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from ..safety.http import is_loopback
from .certs import describe, issued_by, key_pem, name, new_key, now, pem, write_private
from .http import HttpService, Request, Response

__all__ = [
    "CERT_REVOKED", "Issued", "ServiceCredentials", "Revocation", "RevocationService", "TestPKI", "USAGES", "VALIDITIES", "check_revocation", "describe", "fetch_crl",
    "issue", "refuse_revoked",
    "issued_by", "key_pem", "name", "new_key", "now", "pem", "self_signed_ca", "write_private",
]

DAY = dt.timedelta(days=1)
USAGES = ("server", "client", "signing", "timestamping")
VALIDITIES = ("valid", "expired", "not-yet-valid", "short")
SHORT_DAYS = 5  # "short": a certificate about to expire (a relying party warns)
OCSP_TYPE, CRL_TYPE = "application/ocsp-response", "application/pkix-crl"
MAX_OCSP_REQUEST = 64 * 1024
MAX_ANSWER = 1024 * 1024  # bytes read of a responder's answer


def _key_usage(**on: bool) -> x509.KeyUsage:
    flags = dict(digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                 key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False)
    flags.update(on)
    return x509.KeyUsage(**flags)


@dataclass
class Issued:
    """A certificate, its key and the chain up to (not including) the root."""

    cert: x509.Certificate
    key: Any
    chain: list[x509.Certificate] = field(default_factory=list)

    def chain_pem(self) -> bytes:
        return pem(self.cert) + b"".join(pem(c) for c in self.chain)

    def write(self, folder: Path, stem: str) -> tuple[Path, Path]:
        """``<stem>.pem`` (the certificate, then its chain) and ``<stem>.key`` (owner only)."""
        folder.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
        cert_path.write_bytes(self.chain_pem())
        write_private(key_path, key_pem(self.key))
        return cert_path, key_path


def self_signed_ca(cn: str, org: str = "Harness (test)", *, key: Any = None, days: int = 3650) -> Issued:
    """A lone authority nobody trusts (the "unknown authority" cases)."""
    key = key or new_key()
    t = now()
    cert = (x509.CertificateBuilder().subject_name(name(cn, org)).issuer_name(name(cn, org)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(t - DAY).not_valid_after(t + days * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(cert, key)


def issue(ca: Issued, cn: str, *, usage: str = "client", org: str = "Harness (test)", validity: str = "valid", key: Any = None,
          not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
          hosts: tuple[str, ...] = ("localhost", "127.0.0.1"), ocsp_url: str | None = None, crl_url: str | None = None) -> Issued:
    """A certificate of ``ca`` for ``usage`` (server, client, signing, timestamping),
    ``validity`` one of valid, expired (ended two days ago), not-yet-valid (begins in ten
    days) and short (ends in :data:`SHORT_DAYS` days); explicit dates win. Variants of one
    holder may share ``key``. ``ocsp_url`` and ``crl_url`` name the revocation services."""
    if usage not in USAGES:
        raise ValueError(f"usage {usage!r} not in {USAGES}")
    if validity not in VALIDITIES:
        raise ValueError(f"validity {validity!r} not in {VALIDITIES}")
    key = key or new_key()
    t = now()
    start, end = {"valid": (t - DAY, t + 90 * DAY), "expired": (t - 400 * DAY, t - 2 * DAY),
                  "not-yet-valid": (t + 10 * DAY, t + 400 * DAY), "short": (t - DAY, t + SHORT_DAYS * DAY)}[validity]
    b = (x509.CertificateBuilder().subject_name(name(cn, org)).issuer_name(ca.cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(not_before or start).not_valid_after(not_after or end)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False))
    if usage == "server":
        b = b.add_extension(_key_usage(digital_signature=True, key_encipherment=True), critical=True)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        b = b.add_extension(x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False)
    elif usage == "client":
        b = b.add_extension(_key_usage(digital_signature=True, key_encipherment=True), critical=True)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    elif usage == "signing":
        b = b.add_extension(_key_usage(digital_signature=True, content_commitment=True), critical=True)
    else:
        b = b.add_extension(_key_usage(digital_signature=True), critical=True)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    if ocsp_url:
        b = b.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url))]), critical=False)
    if crl_url:
        b = b.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(crl_url)], None, None, None)]), critical=False)
    return Issued(b.sign(ca.key, hashes.SHA256()), key, [ca.cert] if ca.cert.issuer != ca.cert.subject else [])


class TestPKI:
    """A root, an intermediate and its OCSP responder certificate; certificates on demand.

    ``name`` prefixes every authority's common name; ``org`` is their organisation.
    :meth:`start` serves the revocation services and must come before :meth:`issue` for
    issued certificates to name them (a certificate issued before names none)."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, name_: str = "Harness", *, org: str = "Harness (test)") -> None:
        self.org = org
        self.root = self_signed_ca(f"{name_} AC racine (test)", org)
        self.intermediate = self._authority(f"{name_} AC organisations (test)")
        self._responder_cert: Issued | None = None
        self.revoked: dict[int, tuple[dt.datetime, x509.ReasonFlags]] = {}
        self.issued: dict[int, x509.Certificate] = {}
        self.service: RevocationService | None = None
        self.crl_number = 0

    # -- authorities ------------------------------------------------------------------------

    def _authority(self, cn: str) -> Issued:
        key = new_key()
        t = now()
        cert = (x509.CertificateBuilder().subject_name(name(cn, self.org)).issuer_name(self.root.cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(t - DAY).not_valid_after(t + 5 * 365 * DAY)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.root.key.public_key()), critical=False)
                .sign(self.root.key, hashes.SHA256()))
        return Issued(cert, key, [])

    @property
    def responder_cert(self) -> Issued:
        """The delegated OCSP responder certificate, made when first needed."""
        if self._responder_cert is None:
            self._responder_cert = self._responder()
        return self._responder_cert

    def _responder(self) -> Issued:
        """The intermediate's delegated OCSP responder (RFC 6960 4.2.2.2), not itself checked."""
        key = new_key()
        t = now()
        ca = self.intermediate
        cert = (x509.CertificateBuilder().subject_name(name(f"{ca.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value} OCSP", self.org))
                .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(t - DAY).not_valid_after(t + 365 * DAY)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(_key_usage(digital_signature=True), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=True)
                .add_extension(x509.OCSPNoCheck(), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
                .sign(ca.key, hashes.SHA256()))
        return Issued(cert, key, [ca.cert])

    @property
    def anchors(self) -> list[x509.Certificate]:
        """What a relying party trusts: the root, and the intermediate (so a peer that sends
        its certificate alone is still chained)."""
        return [self.root.cert, self.intermediate.cert]

    def anchors_pem(self) -> bytes:
        return b"".join(pem(c) for c in self.anchors)

    # -- certificates ---------------------------------------------------------------------

    def issue(self, cn: str, **kw: Any) -> Issued:
        """A certificate of the intermediate (see :func:`issue`), naming the revocation
        services once they run; the PKI answers for it."""
        if self.service is not None:
            kw.setdefault("ocsp_url", self.service.ocsp_url)
            kw.setdefault("crl_url", self.service.crl_url)
        issued = issue(self.intermediate, cn, org=kw.pop("org", None) or self.org, **kw)
        self.issued[issued.cert.serial_number] = issued.cert
        return issued

    def revoke(self, cert: x509.Certificate, reason: x509.ReasonFlags = x509.ReasonFlags.key_compromise,
               at: dt.datetime | None = None) -> None:
        self.revoked[cert.serial_number] = (at or now() - dt.timedelta(minutes=1), reason)

    def status(self, serial: int) -> str:
        """good, revoked, or unknown (a serial this PKI never issued)."""
        if serial in self.revoked:
            return "revoked"
        return "good" if serial in self.issued else "unknown"

    # -- revocation information -----------------------------------------------------------

    def crl(self) -> bytes:
        """The intermediate's CRL (DER), valid one day, numbered."""
        self.crl_number += 1
        t = now()
        ca = self.intermediate
        b = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject).last_update(t - dt.timedelta(minutes=1))
             .next_update(t + DAY).add_extension(x509.CRLNumber(self.crl_number), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False))
        for serial, (when, reason) in sorted(self.revoked.items()):
            b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
                                          .add_extension(x509.CRLReason(reason), critical=False).build())
        return b.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def ocsp(self, request_der: bytes) -> bytes:
        """The responder's answer (DER) to one request (RFC 6960): signed by the delegated
        responder certificate; ``malformedRequest`` for what does not parse,
        ``unauthorized`` for another authority's certificate (4.2.1)."""
        try:
            req = ocsp.load_der_ocsp_request(request_der)
        except ValueError:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(serialization.Encoding.DER)
        ca = self.intermediate.cert
        try:
            ours = (req.issuer_name_hash, req.issuer_key_hash) == _issuer_hashes(self, req.hash_algorithm)
        except Exception:  # a hash algorithm cryptography does not offer for OCSP
            ours = False
        cert = self.issued.get(req.serial_number)
        if not ours or cert is None:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(serialization.Encoding.DER)
        t = now()
        revoked = self.revoked.get(req.serial_number)
        b = ocsp.OCSPResponseBuilder().add_response(
            cert=cert, issuer=ca, algorithm=req.hash_algorithm,
            cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
            this_update=t - dt.timedelta(minutes=1), next_update=t + dt.timedelta(hours=1),
            revocation_time=revoked[0] if revoked else None, revocation_reason=revoked[1] if revoked else None,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, self.responder_cert.cert).certificates([self.responder_cert.cert])
        nonce = _nonce(req)
        if nonce is not None:
            b = b.add_extension(x509.OCSPNonce(nonce), critical=False)
        return b.sign(self.responder_cert.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    # -- the services ---------------------------------------------------------------------

    def start(self, *, port: int = 0) -> "TestPKI":
        """Serve OCSP and the CRL on loopback (certificates issued from now on name them)."""
        if self.service is None:
            self.service = RevocationService(self, port=port).start()
        return self

    def stop(self) -> None:
        if self.service is not None:
            service, self.service = self.service, None
            service.stop()

    def __enter__(self) -> "TestPKI":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _issuer_hashes(pki: "TestPKI", algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """The intermediate's name and key hashes under ``algorithm`` (RFC 6960 4.1.1), as
    ``cryptography`` computes them for a request about one of its certificates."""
    probe = ocsp.OCSPRequestBuilder().add_certificate(pki.responder_cert.cert, pki.intermediate.cert, algorithm).build()
    return probe.issuer_name_hash, probe.issuer_key_hash


def _nonce(req: ocsp.OCSPRequest) -> bytes | None:
    try:
        return req.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


class RevocationService(HttpService):
    """The PKI's OCSP responder (``POST /ocsp``, and ``GET /ocsp/<base64>``, RFC 6960 A.1)
    and CRL distribution point (``GET /crl``), on loopback; every exchange recorded."""

    name = "pki-revocation"
    max_request = MAX_OCSP_REQUEST

    def __init__(self, pki: TestPKI, *, port: int = 0) -> None:
        self.pki = pki
        super().__init__(port=port)

    @property
    def ocsp_url(self) -> str:
        return self.base_url + "ocsp"

    @property
    def crl_url(self) -> str:
        return self.base_url + "crl"

    def handle(self, request: Request) -> Response:
        if request.path == "/crl" and request.method in ("GET", "HEAD"):
            request.exchange.facts["served"] = "crl"
            return Response(200, self.pki.crl(), CRL_TYPE)
        if request.path == "/ocsp" and request.method == "POST":
            der = request.body
        elif request.path.startswith("/ocsp/") and request.method == "GET":
            try:
                der = base64.b64decode(urllib.request.unquote(request.path[6:]), validate=True)
            except ValueError:
                der = b""
        else:
            return Response(404, b"not found\n")
        answer = self.pki.ocsp(der)
        request.exchange.facts.update(served="ocsp", **_ocsp_facts(der, answer))
        return Response(200, answer, OCSP_TYPE)


def _ocsp_facts(request_der: bytes, response_der: bytes) -> dict:
    """The serial asked and the status answered: what a reader of the journal looks for."""
    facts: dict = {}
    try:
        facts["serial"] = format(ocsp.load_der_ocsp_request(request_der).serial_number, "x")
    except ValueError:
        facts["serial"] = None
    resp = ocsp.load_der_ocsp_response(response_der)
    facts["response_status"] = resp.response_status.name.lower()
    if resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL:
        facts["cert_status"] = resp.certificate_status.name.lower()
    return facts


# -- the relying party ------------------------------------------------------------------------


@dataclass
class Revocation:
    """A certificate's revocation status as a relying party found it.

    ``status``: good, revoked, unknown (the responder does not know it), or unchecked (no
    service named, one off loopback, or none answered: ``error`` says why). ``method``: ocsp
    or crl. ``consulted``: each service asked, in order, with what came of it."""

    status: str
    method: str = ""
    url: str = ""
    reason: str = ""
    revoked_at: str = ""
    error: str = ""
    consulted: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in ("", None, [])}


def _urls(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    ocsp_urls, crl_urls = [], []
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        ocsp_urls = [d.access_location.value for d in aia if d.access_method == AuthorityInformationAccessOID.OCSP
                     and isinstance(d.access_location, x509.UniformResourceIdentifier)]
    except x509.ExtensionNotFound:
        pass
    try:
        for point in cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value:
            crl_urls += [n.value for n in point.full_name or () if isinstance(n, x509.UniformResourceIdentifier)]
    except x509.ExtensionNotFound:
        pass
    return ocsp_urls, crl_urls


def _fetch(url: str, data: bytes | None, content_type: str, timeout: float) -> bytes:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": content_type} if data else {})
    # a loopback address only (checked by the caller): no proxy is ever asked
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=timeout) as r:
        body = r.read(MAX_ANSWER + 1)
    if len(body) > MAX_ANSWER:
        raise ValueError(f"answer over {MAX_ANSWER} bytes")
    return body


def _ocsp_status(cert: x509.Certificate, issuer: x509.Certificate, url: str, timeout: float) -> Revocation:
    import os

    nonce = os.urandom(16)
    req = (ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256())
           .add_extension(x509.OCSPNonce(nonce), critical=False).build())
    resp = ocsp.load_der_ocsp_response(_fetch(url, req.public_bytes(serialization.Encoding.DER), "application/ocsp-request", timeout))
    if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise ValueError(f"OCSP responseStatus {resp.response_status.name}")
    if resp.serial_number != cert.serial_number:
        raise ValueError("OCSP answer about another certificate")
    # the answer is signed by the issuer, or by a responder it delegated (RFC 6960 4.2.2.2)
    signer = issuer
    for c in resp.certificates:
        if issued_by(c, [issuer]) is not None and ExtendedKeyUsageOID.OCSP_SIGNING in _eku(c):
            signer = c
    try:
        signer.public_key().verify(resp.signature, resp.tbs_response_bytes, *_verify_args(signer, resp))
    except InvalidSignature:
        raise ValueError("OCSP answer's signature does not verify") from None
    try:
        echoed = resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        echoed = None
    if echoed is not None and echoed != nonce:
        raise ValueError("OCSP answer's nonce is not the request's")
    status = resp.certificate_status.name.lower()
    out = Revocation(status, "ocsp", url)
    if resp.certificate_status == ocsp.OCSPCertStatus.REVOKED:
        out.revoked_at = resp.revocation_time_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        out.reason = resp.revocation_reason.name if resp.revocation_reason else ""
    return out


def _crl_status(cert: x509.Certificate, issuer: x509.Certificate, url: str, timeout: float) -> Revocation:
    crl = x509.load_der_x509_crl(_fetch(url, None, "", timeout))
    if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):
        raise ValueError("the CRL is not its issuer's")
    if crl.next_update_utc is not None and crl.next_update_utc < now():
        raise ValueError("the CRL is out of date")
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is None:
        return Revocation("good", "crl", url)
    out = Revocation("revoked", "crl", url, revoked_at=entry.revocation_date_utc.strftime("%Y-%m-%dT%H:%M:%SZ"))
    try:
        out.reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
    except x509.ExtensionNotFound:
        pass
    return out


def _eku(cert: x509.Certificate) -> list:
    try:
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return []


def _verify_args(signer: x509.Certificate, resp: ocsp.OCSPResponse) -> tuple:
    from cryptography.hazmat.primitives.asymmetric import ec, padding

    key = signer.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return padding.PKCS1v15(), resp.signature_hash_algorithm
    if isinstance(key, ec.EllipticCurvePublicKey):
        return (ec.ECDSA(resp.signature_hash_algorithm),)
    return ()


def check_revocation(cert: x509.Certificate, issuer: x509.Certificate, *, deadline: float = 10.0) -> Revocation:
    """Ask the certificate's OCSP responder; if none answers, its CRL (a relying party's
    order, ANS good practices). Only loopback services are asked: the harness never reaches
    out; the total wait is bounded by ``deadline`` seconds."""
    ocsp_urls, crl_urls = _urls(cert)
    consulted: list[dict] = []
    end = time.monotonic() + deadline
    for method, urls, ask in (("ocsp", ocsp_urls, _ocsp_status), ("crl", crl_urls, _crl_status)):
        for url in urls:
            left = end - time.monotonic()
            if left <= 0:
                consulted.append({"method": method, "url": url, "error": "deadline"})
                continue
            if not is_loopback(url):
                consulted.append({"method": method, "url": url, "error": "not on loopback: not asked"})
                continue
            try:
                found = ask(cert, issuer, url, left)
            except (OSError, ValueError, urllib.error.URLError) as exc:
                consulted.append({"method": method, "url": url, "error": str(exc) or type(exc).__name__})
                continue
            consulted.append({"method": method, "url": url, "status": found.status})
            found.consulted = consulted
            return found
    why = "; ".join(f"{c['method']} {c['url']}: {c['error']}" for c in consulted) or "no OCSP responder nor CRL named"
    return Revocation("unchecked", error=why, consulted=consulted)


class ServiceCredentials:
    """A simulator's own test PKI (started: OCSP and CRL served) and the folder where it writes
    what the software needs to call it: ``ca.pem`` (the trust anchors) and the server's
    certificate (``server.pem``/``.key``, for 127.0.0.1); the simulator adds the client
    certificates it issues. A folder the target names is kept; one made here is removed on
    :meth:`close` (idempotent: a simulator that failed to start closes it too)."""

    CA_FILE, SERVER = "ca.pem", "server"

    def __init__(self, name_: str, *, org: str, folder: Path | None = None, prefix: str = "harness-") -> None:
        import tempfile

        self.pki = TestPKI(name_, org=org).start()
        self._own = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix=prefix)) if folder is None else folder
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / self.CA_FILE).write_bytes(self.pki.anchors_pem())
            self.pki.issue("127.0.0.1", usage="server").write(self.folder, self.SERVER)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        import shutil

        self.pki.stop()
        if self._own:
            shutil.rmtree(self.folder, ignore_errors=True)


CERT_REVOKED = 23  # OpenSSL's X509_V_ERR_CERT_REVOKED: the code a revoked certificate is recorded with


def refuse_revoked(connection: Any, der: bytes | None, authority: x509.Certificate, *, deadline: float) -> bool:
    """A service's gate after a TLS handshake (:meth:`HttpService.accept`): a client
    certificate issued by ``authority`` is asked about at its OCSP responder (its CRL if that
    fails, :func:`check_revocation`); a revoked one is refused (False), why said in
    ``connection``. No certificate, or one of another authority (a vendor's own, which this
    service does not run): True, not ours to ask."""
    if der is None:
        return True
    cert = x509.load_der_x509_certificate(der)
    if issued_by(cert, [authority]) is None:
        return True
    found = check_revocation(cert, authority, deadline=deadline)
    connection.revocation = found.to_json()
    if found.status == "revoked":
        connection.error = f"certificate revoked ({found.method.upper()} {found.url}: {found.reason or 'unspecified'}, {found.revoked_at})"
        connection.verify_code = CERT_REVOKED
        return False
    return True


def fetch_crl(url: str, *, timeout: float = 10.0) -> bytes:
    """A CRL (DER) from a loopback distribution point, bounded in size and time."""
    if not is_loopback(url):
        raise ValueError(f"not on loopback: {url}")
    return _fetch(url, None, "", timeout)
