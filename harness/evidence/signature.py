"""Who sealed a bundle: a detached CMS signature (RFC 5652) of its manifest.

The seal (``manifest.sha256``) proves that nothing changed since the manifest was written, but
anyone can rewrite a verdict and seal again. ``manifest.p7s`` is a CMS SignedData over the exact
bytes of ``manifest.json`` made with the vendor's X.509 key: a re-sealed forgery no longer
matches it, and the certificate says who signed.

Signing uses ``cryptography`` (PKCS7SignatureBuilder: SHA-256, signed attributes with the
signing time and the message digest, the signer's certificate chain embedded). Verifying
reads the SignedData with ``asn1crypto`` (``cryptography`` signs CMS but does not verify it),
checks the message digest and the signature with ``cryptography``, and builds the certificate
chain to the trust anchors the verifier supplies with ``cryptography.x509.verification``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HarnessError
from ..messages import Localized, catalogue
from ..messages import visible as printable  # a name read from a certificate: its control characters as escapes

M = catalogue(__name__)
SIGNATURE = "manifest.p7s"
MAX_SIGNATURE = 256 * 1024  # a signature with its chain: a few KiB
MAX_KEY_FILE = 256 * 1024


@dataclass
class Signer:
    key: object
    certificate: object
    chain: list = field(default_factory=list)


def _read(path: Path, what: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_KEY_FILE:
            raise HarnessError(M("sign.too_large", what=what, path=str(path), limit=MAX_KEY_FILE))
        return path.read_bytes()
    except OSError as exc:
        raise HarnessError(M("sign.unreadable", what=what, path=str(path), error=exc.strerror or type(exc).__name__)) from None


def load_signer(key_path: Path, certificate_path: Path | None = None, passphrase: str | None = None) -> Signer:
    """The vendor's key and certificate: a PKCS#12 file (``.p12``/``.pfx``), or a PEM private key
    with its certificate and chain in the same file or in ``certificate_path``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import pkcs12

    data = _read(key_path, M("sign.what_key"))
    password = passphrase.encode("utf-8") if passphrase else None
    try:
        if b"-----BEGIN" not in data:
            key, cert, extra = pkcs12.load_key_and_certificates(data, password)
            chain = list(extra or [])
        else:
            key = serialization.load_pem_private_key(data, password)
            pem = _read(certificate_path, M("sign.what_certificate")) if certificate_path else data
            certs = x509.load_pem_x509_certificates(pem) if b"-----BEGIN CERTIFICATE" in pem else []
            cert, chain = (certs[0], certs[1:]) if certs else (None, [])
    except (ValueError, TypeError) as exc:
        # a wrong passphrase and a damaged file look alike to the library; its text quotes no secret
        raise HarnessError(M("sign.unusable", path=str(key_path), error=str(exc).splitlines()[0][:200])) from None
    if key is None or cert is None:
        raise HarnessError(M("sign.incomplete", path=str(key_path)))
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise HarnessError(M("sign.key_type", path=str(key_path)))
    if cert.public_key().public_numbers() != key.public_key().public_numbers():
        raise HarnessError(M("sign.mismatch", path=str(key_path), subject=cert.subject.rfc4514_string()))
    return Signer(key, cert, chain)


def sign(body: bytes, signer: Signer) -> bytes:
    """A detached CMS SignedData (DER) over ``body``: SHA-256, the signing time and the message
    digest as signed attributes, the signer's certificate and chain embedded."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs7

    builder = pkcs7.PKCS7SignatureBuilder().set_data(body).add_signer(signer.certificate, signer.key, hashes.SHA256())
    for cert in signer.chain:
        builder = builder.add_certificate(cert)
    return builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])


MAX_TIMESTAMP_RESPONSE = 64 * 1024
TST_INFO = "1.2.840.113549.1.9.16.1.4"  # id-ct-TSTInfo (compared by OID: asn1crypto names it once its tsp module is loaded)


def timestamp(p7s: bytes, url: str, *, deadline: float = 30.0, offline: bool = False) -> tuple[bytes, Localized | None]:
    """``p7s`` with an RFC 3161 timestamp of its signature from the authority at ``url``
    (an unsigned attribute, id-aa-signatureTimeStampToken, RFC 3161 appendix A), or ``p7s``
    unchanged and why not. The request is bounded (``deadline``, size) and never raises."""
    import secrets

    from asn1crypto import algos, cms, tsp

    from ..safety.http import HttpClient

    info = cms.ContentInfo.load(p7s)
    signer_info = info["content"]["signer_infos"][0]
    nonce = secrets.randbits(63)
    request = tsp.TimeStampReq({"version": 1, "nonce": nonce, "cert_req": True, "message_imprint": {
        "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
        "hashed_message": hashlib.sha256(signer_info["signature"].native).digest()}})
    client = HttpClient(total=deadline, max_bytes=MAX_TIMESTAMP_RESPONSE, offline=offline)
    try:
        res = client.request("POST", url, headers={"Content-Type": "application/timestamp-query"}, data=request.dump())
    finally:
        client.close()
    if res.failure is not None or res.status != 200:
        return p7s, M("tsa.failed", url=url, error=res.error or f"HTTP {res.status}")
    try:
        response = tsp.TimeStampResp.load(res.body, strict=True)
        status = response["status"]["status"].native
        if status not in ("granted", "granted_with_mods"):
            return p7s, M("tsa.refused", url=url, status=str(status))
        token = response["time_stamp_token"]
        tst = token["content"]["encap_content_info"]["content"].parsed
        if tst["nonce"].native != nonce or tst["message_imprint"]["hashed_message"].native != request["message_imprint"]["hashed_message"].native:
            return p7s, M("tsa.mismatch", url=url)
    except (ValueError, TypeError, KeyError) as exc:
        return p7s, M("tsa.unreadable", url=url, error=str(exc)[:200])
    attrs = list(signer_info["unsigned_attrs"]) if signer_info["unsigned_attrs"].native else []
    attrs.append(cms.CMSAttribute({"type": "signature_time_stamp_token", "values": [token]}))
    signer_info["unsigned_attrs"] = cms.CMSAttributes(attrs)
    return info.dump(force=True), None


@dataclass
class SignatureReport:
    """What ``manifest.p7s`` proves. ``status``: ``unsigned``, ``valid``, or ``invalid`` with
    ``problems``; ``trusted`` when the chain reaches one of the verifier's anchors."""

    status: str
    signer: str = ""
    issuer: str = ""
    serial: str = ""
    signed_at: str | None = None  # the signer's own claim (signed attribute), not a timestamp
    not_after: str | None = None
    anchor: str | None = None
    timestamped_at: str | None = None  # the authority's time (RFC 3161), when the signature carries a timestamp
    tsa: str | None = None
    tsa_anchor: str | None = None
    problems: list[Localized] = field(default_factory=list)

    @property
    def trusted(self) -> bool:
        return self.status == "valid" and self.anchor is not None


_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


def _crypto_hash(name: str):
    from cryptography.hazmat.primitives import hashes

    return {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}[name]


def _signer_of(signed) -> tuple[object, list, str, dict, bytes, bytes]:
    """(signer certificate, every certificate, digest name, signed attributes, their DER as
    signed, signature) of a SignedData's one signer; ValueError when it is not readable."""
    from cryptography import x509

    [signer_info] = list(signed["signer_infos"])
    certs = [x509.load_der_x509_certificate(c.chosen.dump()) for c in (signed["certificates"] or []) if c.name == "certificate"]
    sid = signer_info["sid"]
    if sid.name != "issuer_and_serial_number":
        raise ValueError("signer identified otherwise than by issuer and serial number")
    serial = sid.chosen["serial_number"].native
    issuer_der = sid.chosen["issuer"].dump()
    [cert] = [c for c in certs if c.serial_number == serial and c.issuer.public_bytes() == issuer_der] or [None]
    if cert is None:
        raise ValueError("the signer's certificate is not in the signature")
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    if digest_name not in _HASHES:
        raise ValueError(f"digest algorithm {digest_name} not accepted")
    attrs = {a["type"].native: a["values"][0].native for a in signer_info["signed_attrs"]}
    # what was signed: the signed attributes, DER, with their SET tag (RFC 5652, 5.4)
    to_verify = b"\x31" + signer_info["signed_attrs"].dump()[1:]
    return cert, certs, digest_name, attrs, to_verify, signer_info["signature"].native


def _signature_holds(cert, digest_name: str, to_verify: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, to_verify, padding.PKCS1v15(), _crypto_hash(digest_name))
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, to_verify, ec.ECDSA(_crypto_hash(digest_name)))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def verify_signature(body: bytes, p7s: bytes | None, anchors: list | None = None, at: dt.datetime | None = None) -> SignatureReport:
    """Check ``p7s`` against the manifest ``body``: structure, message digest, signature; its
    timestamp when it carries one; and, with ``anchors`` (trusted root or intermediate
    certificates), the signer's chain at the timestamp's time (else at ``at``, now by default)
    and the authority's. Never raises for a malformed signature: it is a problem of the report."""
    if p7s is None:
        return SignatureReport("unsigned")
    from asn1crypto import cms, tsp  # noqa: F401 (tsp registers the TSTInfo content a timestamp token holds)

    report = SignatureReport("invalid")
    try:
        info = cms.ContentInfo.load(p7s, strict=True)
        if info["content_type"].native != "signed_data":
            raise ValueError("not a CMS SignedData")
        signed = info["content"]
        if signed["encap_content_info"]["content"].native is not None:
            raise ValueError("not a detached signature")
        cert, certs, digest_name, attrs, to_verify, signature = _signer_of(signed)
        unsigned = signed["signer_infos"][0]["unsigned_attrs"]
        tokens = [a["values"][0] for a in unsigned if a["type"].native == "signature_time_stamp_token"] if unsigned.native else []
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        # a structure nested past the reader's depth is malformed too, never a traceback
        report.problems.append(M("sig.malformed", error=printable(str(exc) or type(exc).__name__)[:200]))
        return report
    report.signer = printable(cert.subject.rfc4514_string())
    report.issuer = printable(cert.issuer.rfc4514_string())
    report.serial = format(cert.serial_number, "x")
    report.not_after = cert.not_valid_after_utc.isoformat()
    signing_time = attrs.get("signing_time")
    report.signed_at = signing_time.isoformat() if isinstance(signing_time, dt.datetime) else None
    if attrs.get("content_type") != "data" or attrs.get("message_digest") is None:
        report.problems.append(M("sig.attributes"))
        return report
    if attrs["message_digest"] != _HASHES[digest_name](body).digest():
        report.problems.append(M("sig.digest"))  # the manifest changed after it was signed: a re-sealed forgery
        return report
    if not _signature_holds(cert, digest_name, to_verify, signature):
        report.problems.append(M("sig.bad_signature"))
        return report
    refused = _signing_usage_refused(cert)
    if refused is not None:
        report.problems.append(refused)
        return report
    report.status = "valid"
    when = at or dt.datetime.now(dt.timezone.utc)
    if tokens:
        stamped = _check_timestamp(report, tokens[0], signature, anchors)
        if stamped is None:
            return report
        when = stamped  # the certificate must have been valid when the authority saw the signature
    if anchors:
        _check_chain(report, cert, [c for c in certs if c is not cert], anchors, when)
    return report


def _check_timestamp(report: SignatureReport, token, signature: bytes, anchors: list | None) -> dt.datetime | None:
    """The time an RFC 3161 token proves for ``signature`` (None, with the problem, when it proves nothing)."""
    try:
        signed = token["content"]
        if token["content_type"].native != "signed_data" or signed["encap_content_info"]["content_type"].dotted != TST_INFO:
            raise ValueError("not an RFC 3161 timestamp token")
        content = signed["encap_content_info"]["content"]
        tst_der = content.contents if hasattr(content, "contents") else bytes(content)
        tst = content.parsed
        cert, certs, digest_name, attrs, to_verify, tsa_signature = _signer_of(signed)
        imprint = tst["message_imprint"]
        imprint_hash = imprint["hash_algorithm"]["algorithm"].native
        gen_time = tst["gen_time"].native
    except (ValueError, TypeError, KeyError, RecursionError) as exc:  # a token nested past the reader's depth too
        report.status = "invalid"
        report.problems.append(M("sig.timestamp_malformed", error=str(exc)[:200]))
        return None
    report.tsa = printable(cert.subject.rfc4514_string())
    report.timestamped_at = gen_time.isoformat()
    refused = _tsa_usage_refused(cert)
    if refused is not None:
        report.status = "invalid"
        report.problems.append(M("sig.timestamp_not_tsa_usage", tsa=report.tsa, why=refused))
        return None
    if imprint_hash not in _HASHES or imprint["hashed_message"].native != _HASHES[imprint_hash](signature).digest():
        report.status = "invalid"
        report.problems.append(M("sig.timestamp_other"))
        return None
    if attrs.get("message_digest") != _HASHES[digest_name](tst_der).digest() or not _signature_holds(cert, digest_name, to_verify, tsa_signature):
        report.status = "invalid"
        report.problems.append(M("sig.timestamp_forged", tsa=report.tsa))
        return None
    if anchors:
        sub = SignatureReport("valid")
        _check_chain(sub, cert, [c for c in certs if c is not cert], anchors, gen_time)
        if sub.status != "valid":
            report.status = "invalid"
            report.problems.append(M("sig.timestamp_untrusted", tsa=report.tsa, why=sub.problems[0]))
            return None
        report.tsa_anchor = sub.anchor
    return gen_time


def _tsa_usage_refused(cert) -> Localized | None:
    """Why the certificate is no timestamp authority's (RFC 3161 2.3: exactly one extended key
    usage, id-kp-timeStamping, in a critical extension; RFC 5280 4.2.1.3: a key usage, when
    present, that allows a signature)."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return M("sig.tsa_no_eku")
    if ExtendedKeyUsageOID.TIME_STAMPING not in ext.value:
        return M("sig.tsa_no_eku")
    if len(list(ext.value)) != 1:
        return M("sig.tsa_other_purposes", purposes=", ".join(sorted(oid.dotted_string for oid in ext.value)))
    if not ext.critical:
        return M("sig.tsa_not_critical")
    return _key_usage_refused(cert)


def _key_usage_refused(cert) -> Localized | None:
    """A key usage, when present, without digitalSignature nor nonRepudiation (RFC 5280 4.2.1.3)."""
    from cryptography import x509

    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    return None if usage.digital_signature or usage.content_commitment else M("sig.key_usage")


# extended key usages that allow signing a document (RFC 9336 documentSigning, S/MIME's
# emailProtection, and the "any" purpose); a certificate for TLS alone signs no evidence
_SIGNING_EKUS = {"1.3.6.1.5.5.7.3.36", "1.3.6.1.5.5.7.3.4", "2.5.29.37.0"}


def _signing_usage_refused(cert) -> Localized | None:
    """Why the certificate may not sign (RFC 5280 4.2.1.3 and 4.2.1.12; RFC 5652 and RFC 8933
    leave the signer's usage to them): a key usage without digitalSignature nor
    nonRepudiation, an extended key usage naming only other purposes (a TLS certificate)."""
    from cryptography import x509

    refused = _key_usage_refused(cert)
    if refused is not None:
        return refused
    try:
        purposes = {oid.dotted_string for oid in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value}
        if not purposes & _SIGNING_EKUS:
            return M("sig.extended_key_usage", purposes=", ".join(sorted(purposes)))
    except x509.ExtensionNotFound:
        pass
    return None


def _check_chain(report: SignatureReport, cert, intermediates: list, anchors: list, at: dt.datetime) -> None:
    from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

    if not (cert.not_valid_before_utc <= at <= cert.not_valid_after_utc):
        report.status = "invalid"
        report.problems.append(M("sig.expired", not_before=cert.not_valid_before_utc.isoformat(), not_after=cert.not_valid_after_utc.isoformat(),
                                 at=at.isoformat(timespec="seconds")))
        return
    # a signing certificate is no TLS client: the end entity is checked as the chain's leaf,
    # not against a web-PKI key usage profile
    verifier = PolicyBuilder().store(Store(anchors)).time(at).extension_policies(
        ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()).build_client_verifier()
    try:
        chain = verifier.verify(cert, intermediates).chain
    except VerificationError as exc:
        report.status = "invalid"
        report.problems.append(M("sig.untrusted", error=str(exc)[:300]))
        return
    report.anchor = printable(chain[-1].subject.rfc4514_string())
