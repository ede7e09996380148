"""Hostile signers (issue 24, item 3): a certificate that may not sign documents, and a name
written to forge a line on the verifier's terminal."""
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.evidence.signature import Signer, printable, sign, verify_signature  # printable: harness.messages.visible

NOW = dt.datetime.now(dt.timezone.utc)
BODY = b'{"manifest": "of a bundle"}'


def _key_usage(**on):
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement", "key_cert_sign",
             "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: on.get(n, False) for n in names})


def _signer(cn: str, *extensions) -> tuple[Signer, x509.Certificate]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hostile Test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
          .not_valid_after(NOW + dt.timedelta(days=30)).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).issuer_name(ca_name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
         .not_valid_after(NOW + dt.timedelta(days=30)).add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    for ext in extensions:
        b = b.add_extension(ext, critical=False)
    return Signer(key, b.sign(ca_key, hashes.SHA256())), ca


@pytest.mark.parametrize("extension, says", [
    (_key_usage(key_encipherment=True), "does not allow signing"),  # an encryption certificate
    (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), "for other purposes"),  # a TLS server certificate
])
def test_a_certificate_that_may_not_sign_is_no_signer_even_with_a_valid_chain(extension, says):
    signer, ca = _signer("Editeur Exemple SAS", extension)
    report = verify_signature(BODY, sign(BODY, signer), [ca])
    assert report.status == "invalid" and not report.trusted
    assert any(says in p.render("en") for p in report.problems) and all(p.render("fr") for p in report.problems)


def test_a_certificate_for_signing_documents_still_signs():
    signer, ca = _signer("Editeur Exemple SAS", _key_usage(digital_signature=True, content_commitment=True),
                         x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")]))  # documentSigning
    report = verify_signature(BODY, sign(BODY, signer), [ca])
    assert report.status == "valid" and report.trusted, [p.render("en") for p in report.problems]


def test_a_signer_name_cannot_write_a_line_on_the_verifiers_terminal(capsys):
    forged = "E\nSigned by CN=ANS \x1b[32m(trusted)\x1b[0m"  # a CN holds 64 characters at most
    signer, ca = _signer(forged)
    report = verify_signature(BODY, sign(BODY, signer), [ca])
    assert report.status == "valid"
    assert "\n" not in report.signer and "\x1b" not in report.signer and "\\n" in report.signer and "\\x1b" in report.signer
    assert printable("Éditeur Exemple — 5.4.2") == "Éditeur Exemple — 5.4.2"  # what is printable stays as written


# -- the timestamp authority's certificate (RFC 3161 2.3) ------------------------------------


def _tsa(eku_oids, critical=True, key_usage=None):
    signer, ca = _signer("Test TSA")
    key = ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test TSA")]))
         .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=30))
         .add_extension(x509.ExtendedKeyUsage(eku_oids), critical=critical))
    if key_usage is not None:
        b = b.add_extension(key_usage, critical=True)
    return key, b.sign(signer.key, hashes.SHA256())  # issued by a key no anchor names: the usage is judged first


@pytest.mark.parametrize("eku, critical, key_usage, says", [
    ([ExtendedKeyUsageOID.TIME_STAMPING], False, None, "not marked critical"),
    ([ExtendedKeyUsageOID.TIME_STAMPING, ExtendedKeyUsageOID.SERVER_AUTH], True, None, "other purposes besides timeStamping"),
    ([ExtendedKeyUsageOID.TIME_STAMPING], True, _key_usage(key_encipherment=True), "does not allow signing"),
    ([ExtendedKeyUsageOID.SERVER_AUTH], True, None, "timeStamping missing"),
])
def test_a_timestamp_from_a_certificate_that_is_no_tsa_proves_no_time(eku, critical, key_usage, says):
    from harness.evidence.signature import timestamp
    from tests.tsa import TimestampAuthority

    signer, ca = _signer("Editeur Exemple SAS", _key_usage(digital_signature=True))
    tsa = TimestampAuthority(*_tsa(eku, critical, key_usage))
    try:
        p7s, warning = timestamp(sign(BODY, signer), tsa.url, deadline=10)
    finally:
        tsa.stop()
    assert warning is None and tsa.errors == []
    report = verify_signature(BODY, p7s, [ca])
    assert report.status == "invalid" and report.timestamped_at is not None
    assert any("is no timestamp authority certificate" in p.render("en") and says in p.render("en") for p in report.problems), \
        [p.render("en") for p in report.problems]


def _deep(depth: int) -> bytes:
    """A DER value nested ``depth`` SEQUENCEs deep (definite lengths, built inside out)."""
    def length(n: int) -> bytes:
        return bytes([n]) if n < 128 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")

    inner, heads = b"\x05\x00", []
    size = len(inner)
    for _ in range(depth):
        head = b"\x30" + length(size)
        heads.append(head)
        size += len(head)
    return b"".join(reversed(heads)) + inner


def _with_deep_attribute(signed_data) -> None:
    from asn1crypto import cms, core

    signed_data["signer_infos"][0]["signed_attrs"].append(
        cms.CMSAttribute({"type": "1.2.3.4.5", "values": [core.Any.load(_deep(60_000))]}))


def test_a_signed_attribute_nested_sixty_thousand_deep_is_malformed_not_a_traceback():
    """A signed attribute nested 60,000 levels deep ended verify and report in a RecursionError
    traceback: in the signature, or in its timestamp token, it is a malformed structure."""
    from asn1crypto import cms

    from harness.evidence.signature import timestamp
    from tests.tsa import TimestampAuthority

    signer, ca = _signer("Editeur Exemple SAS", _key_usage(digital_signature=True))
    info = cms.ContentInfo.load(sign(BODY, signer))
    _with_deep_attribute(info["content"])
    report = verify_signature(BODY, info.dump(force=True), [ca])
    assert report.status == "invalid" and "not a readable detached CMS signature" in report.problems[0].render("en")
    tsa = TimestampAuthority(*_tsa([ExtendedKeyUsageOID.TIME_STAMPING]))
    try:
        p7s, _ = timestamp(sign(BODY, signer), tsa.url, deadline=10)
    finally:
        tsa.stop()
    info = cms.ContentInfo.load(p7s)
    token = info["content"]["signer_infos"][0]["unsigned_attrs"][0]["values"][0]
    _with_deep_attribute(token["content"])
    report = verify_signature(BODY, info.dump(force=True), [ca])
    assert report.status == "invalid" and report.problems and report.timestamped_at is None
