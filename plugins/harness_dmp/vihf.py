"""The VIHF: the SAML 2 assertion a DMP client puts in the WS-Security header of each call.

It says who calls (the professional, the structure, its sector of activity, the role), why
(the access mode), about whom (the patient's INS as the resource), and with which software
(``LPS_Nom``, ``LPS_Version``: one more channel where the software's version shows). It is
signed (XML-DSig, enveloped) by the structure's certificate.

Writing (the demo vendor) and checking (the DMP plugin) use ``signxml`` (XML signatures
on lxml and ``cryptography``). The attribute names are those of the DMP integration guide's
VIHF chapter as this project knows them (:data:`REQUIRED`); a finding names the missing one.
"""
from __future__ import annotations

import base64
import datetime as dt
import uuid
from dataclasses import dataclass, field

from cryptography import x509
from lxml import etree
from signxml import InvalidInput, InvalidSignature, XMLSigner, XMLVerifier
from signxml.exceptions import SignXMLException

from harness import Problem, Severity, catalogue, pki
from harness_xds import xua

M = catalogue(__name__)

SAML, WSSE = xua.SAML, xua.WSSE
DS = "http://www.w3.org/2000/09/xmldsig#"
ROLE = "urn:oasis:names:tc:xacml:2.0:subject:role"
PURPOSE = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
RESOURCE = "urn:oasis:names:tc:xacml:2.0:resource:resource-id"
SOFTWARE_NAME, SOFTWARE_VERSION = "LPS_Nom", "LPS_Version"
# attribute -> what it says (named in the finding when missing)
REQUIRED = {
    "VIHF_Version": M("vihf.what.version"),
    "Identifiant_Structure": M("vihf.what.structure"),
    "Secteur_Activite": M("vihf.what.sector"),
    ROLE: M("vihf.what.role"),
    PURPOSE: M("vihf.what.access_mode"),
    RESOURCE: M("vihf.what.patient"),
    "Authentification_Mode": M("vihf.what.authentication"),
    "Ressource_URN": M("vihf.what.resource"),
    SOFTWARE_NAME: M("vihf.what.software_name"),
    SOFTWARE_VERSION: M("vihf.what.software_version"),
}
SKEW = dt.timedelta(minutes=5)  # clock difference tolerated between the software and the DMP


def _ts(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(attributes: dict[str, str], *, subject: str, key, cert: x509.Certificate, now: dt.datetime | None = None,
          lifetime: dt.timedelta = dt.timedelta(minutes=10), issuer: str = "Cabinet Démo", sign: bool = True) -> etree._Element:
    """A signed VIHF assertion (the demo vendor's), valid from ``now`` for ``lifetime``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    a = etree.Element(f"{{{SAML}}}Assertion", {"ID": f"_{uuid.uuid4().hex}", "IssueInstant": _ts(now), "Version": "2.0"}, nsmap={"saml2": SAML})
    etree.SubElement(a, f"{{{SAML}}}Issuer").text = issuer
    if sign:
        etree.SubElement(a, f"{{{DS}}}Signature", {"Id": "placeholder"}, nsmap={"ds": DS})
    s = etree.SubElement(a, f"{{{SAML}}}Subject")
    etree.SubElement(s, f"{{{SAML}}}NameID").text = subject
    etree.SubElement(s, f"{{{SAML}}}SubjectConfirmation", Method="urn:oasis:names:tc:SAML:2.0:cm:sender-vouches")
    etree.SubElement(a, f"{{{SAML}}}Conditions", NotBefore=_ts(now - dt.timedelta(seconds=30)), NotOnOrAfter=_ts(now + lifetime))
    authn = etree.SubElement(a, f"{{{SAML}}}AuthnStatement", AuthnInstant=_ts(now))
    etree.SubElement(etree.SubElement(authn, f"{{{SAML}}}AuthnContext"), f"{{{SAML}}}AuthnContextClassRef").text = \
        "urn:oasis:names:tc:SAML:2.0:ac:classes:TLSClient"
    statement = etree.SubElement(a, f"{{{SAML}}}AttributeStatement")
    for name, value in attributes.items():
        attr = etree.SubElement(statement, f"{{{SAML}}}Attribute", Name=name)
        etree.SubElement(attr, f"{{{SAML}}}AttributeValue").text = value
    if not sign:
        return a
    return XMLSigner(c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#").sign(
        a, key=key, cert=[cert], reference_uri=a.get("ID"), id_attribute="ID")


@dataclass
class VihfReading:
    problems: list[Problem] = field(default_factory=list)
    attributes: dict[str, list[str]] = field(default_factory=dict)
    subject: str = ""
    signer: dict | None = None  # the signing certificate, described

    @property
    def software(self) -> tuple[str, str] | None:
        name, version = self.attributes.get(SOFTWARE_NAME, [""])[0], self.attributes.get(SOFTWARE_VERSION, [""])[0]
        return (name, version) if name or version else None


find = xua.find  # the assertion in the envelope's WS-Security header


def _parse_ts(value: str | None) -> dt.datetime | None:
    try:
        return dt.datetime.strptime((value or "").replace(".000", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None


def check(assertion: etree._Element | None, *, trusted: list[x509.Certificate], at: dt.datetime, patient: str | None = None,
          base: str = "/Envelope/Header/Security/Assertion") -> VihfReading:
    """Presence, signature (by a certificate of a trusted CA), validity at ``at``, the
    required attributes, and the patient it names against the request's (``patient``)."""
    r = VihfReading()

    def fail(rule: str, where: str, message, severity: Severity = Severity.ERROR) -> None:
        r.problems.append(Problem(rule, severity, where, message))

    if assertion is None:
        fail("DMP-VIHF-01", "/Envelope/Header/Security", M("vihf.missing"))
        return r
    said = xua.read(assertion)
    r.attributes, r.subject = said.attributes, said.subject
    _signature(r, assertion, trusted, at, base, fail)
    conditions = assertion.find(f"{{{SAML}}}Conditions")
    start = _parse_ts(conditions.get("NotBefore")) if conditions is not None else None
    end = _parse_ts(conditions.get("NotOnOrAfter")) if conditions is not None else None
    if start is None or end is None:
        fail("DMP-VIHF-03", f"{base}/Conditions", M("vihf.no_validity"))
    elif at + SKEW < start:
        fail("DMP-VIHF-03", f"{base}/Conditions/@NotBefore", M("vihf.not_yet", start=_ts(start), at=_ts(at)))
    elif at - SKEW >= end:
        fail("DMP-VIHF-03", f"{base}/Conditions/@NotOnOrAfter", M("vihf.expired", end=_ts(end), at=_ts(at)))
    if not r.subject:
        fail("DMP-VIHF-04", f"{base}/Subject/NameID", M("vihf.no_subject"))
    for name, what in REQUIRED.items():
        if not any(v for v in r.attributes.get(name, [])):
            fail("DMP-VIHF-04", f"{base}/AttributeStatement", M("vihf.attribute", name=name, what=what))
    resource = (r.attributes.get(RESOURCE) or [""])[0]
    if patient and resource and resource.split("^^^")[0] != patient.split("^^^")[0]:
        fail("DMP-VIHF-05", f"{base}/AttributeStatement/Attribute[@Name='{RESOURCE}']", M("vihf.patient", vihf=resource, request=patient))
    return r


def _signature(r: VihfReading, assertion: etree._Element, trusted: list[x509.Certificate], at: dt.datetime, base: str, fail) -> None:
    signature = assertion.find(f"{{{DS}}}Signature")
    if signature is None:
        fail("DMP-VIHF-02", base, M("vihf.unsigned"))
        return
    der = signature.findtext(f"{{{DS}}}KeyInfo/{{{DS}}}X509Data/{{{DS}}}X509Certificate")
    if not der:
        fail("DMP-VIHF-02", f"{base}/Signature/KeyInfo", M("vihf.no_certificate"))
        return
    try:
        raw = base64.b64decode("".join(der.split()))
        cert = x509.load_der_x509_certificate(raw)
        r.signer = pki.describe(raw)
    except ValueError as exc:
        fail("DMP-VIHF-02", f"{base}/Signature/KeyInfo", M("vihf.bad_certificate", error=str(exc)))
        return
    try:
        # the signed element must be the assertion itself, whole
        verified = XMLVerifier().verify(etree.fromstring(etree.tostring(assertion)), x509_cert=cert, id_attribute="ID")
        if etree.QName(verified.signed_xml).localname != "Assertion":
            raise InvalidSignature("the signature covers another element")
    except (InvalidSignature, InvalidInput, SignXMLException) as exc:
        fail("DMP-VIHF-02", f"{base}/Signature", M("vihf.bad_signature", error=str(exc)[:300]))
        return
    if not pki.issued_by(cert, trusted):
        fail("DMP-VIHF-02", f"{base}/Signature/KeyInfo", M("vihf.untrusted", issuer=cert.issuer.rfc4514_string()))
    elif not (cert.not_valid_before_utc <= at <= cert.not_valid_after_utc):
        fail("DMP-VIHF-02", f"{base}/Signature/KeyInfo", M("vihf.signer_invalid", start=_ts(cert.not_valid_before_utc), end=_ts(cert.not_valid_after_utc)))
