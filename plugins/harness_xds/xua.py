"""The identity assertion a document-sharing client puts in each call's WS-Security header
(IHE ITI TF-2 3.40 "XUA": a SAML 2.0 assertion; the DMP's VIHF is one): who calls (the
subject's NameID), how they were authenticated (the AuthnStatement's context) and what the
attribute statement says. Reading only, from an element the hardened parser built: the DMP
plugin judges it against its own rules, the Pro Santé Connect plugin against the login the
software holds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
SUBJECT_ID = "urn:oasis:names:tc:xspa:1.0:subject:subject-id"


@dataclass
class Assertion:
    subject: str = ""  # Subject/NameID
    attributes: dict[str, list[str]] = field(default_factory=dict)  # Name -> each AttributeValue's text, spaces collapsed
    authn_class: str = ""  # AuthnStatement/AuthnContext/AuthnContextClassRef
    authn_decl: str = ""  # AuthnStatement/AuthnContext/AuthnContextDecl (text)

    def first(self, name: str) -> str:
        """The first value of attribute ``name`` ("" when absent)."""
        return next((v for v in self.attributes.get(name, []) if v), "")


def find(envelope: etree._Element) -> etree._Element | None:
    """The assertion in a SOAP envelope's WS-Security header, if any."""
    found = envelope.xpath("//wsse:Security/saml2:Assertion", namespaces={"wsse": WSSE, "saml2": SAML})
    return found[0] if found else None


def _text(element: etree._Element | None) -> str:
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


def read(assertion: etree._Element) -> Assertion:
    """What ``assertion`` (a ``saml2:Assertion`` element) says, as written (nothing verified)."""
    out = Assertion(subject=_text(assertion.find(f"{{{SAML}}}Subject/{{{SAML}}}NameID")))
    for attr in assertion.findall(f"{{{SAML}}}AttributeStatement/{{{SAML}}}Attribute"):
        out.attributes.setdefault(attr.get("Name") or "", []).extend(_text(v) for v in attr.findall(f"{{{SAML}}}AttributeValue"))
    context = assertion.find(f"{{{SAML}}}AuthnStatement/{{{SAML}}}AuthnContext")
    if context is not None:
        out.authn_class = _text(context.find(f"{{{SAML}}}AuthnContextClassRef"))
        out.authn_decl = _text(context.find(f"{{{SAML}}}AuthnContextDecl"))
    return out
