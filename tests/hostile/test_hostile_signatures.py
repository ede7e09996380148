"""Hostile signers (issue 24, item 3): a certificate that may not sign documents, and a name
written to forge a line on the verifier's terminal."""
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.signature import Signer, printable, sign, verify_signature

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
