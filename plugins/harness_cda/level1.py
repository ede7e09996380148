"""The level-1 model of a CDA document: an unstructured body (``nonXMLBody``).

A domain library (pure functions of a parsed document): the kit plugin judges a level-1
document against it instead of a structured volet the document does not claim, and the
DMP plugin's built-in checks run it on every document the software sends.

Sources: CI-SIS, structuration minimale des documents de santé (template
1.2.250.1.213.1.1.1.1), as its generic schematron asserts it
(``profils/structurationMinimale``: "in an unstructured CDA document, the templateId
1.3.6.1.4.1.19376.1.2.20 replaces the volet's templateId and only the three templateIds
... are admitted"), and IHE XDS-SD / CDA R2 ``ED`` data type for the body: a base64
(``representation="B64"``) or plain-text content inline, of one of the media types the
CI-SIS admits for level 1 (PDF, JPEG, TIFF, RTF, plain text).

What the declared media type claims is compared with the content's first bytes: a body
that is not base64, or not what it says it is, is a finding, never a pass.
"""
from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from lxml import etree

from harness import Problem, Severity, catalogue


M = catalogue(__name__)

HL7 = "urn:hl7-org:v3"
NS = {"cda": HL7}
N1_TEMPLATE = "1.3.6.1.4.1.19376.1.2.20"
HEADER_TEMPLATES = ("2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1")
# The CI-SIS level-1 formats, and how their bytes begin (None: checked otherwise).
MEDIA_TYPES: dict[str, tuple[bytes, ...] | None] = {
    "application/pdf": (b"%PDF-",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/tiff": (b"II*\x00", b"MM\x00*"),
    "text/rtf": (b"{\\rtf",),
    "text/plain": None,
}
_WHITESPACE = re.compile(rb"\s+")
_MAGIC_NAMES = {b"%PDF-": "application/pdf", b"\xff\xd8\xff": "image/jpeg", b"II*\x00": "image/tiff", b"MM\x00*": "image/tiff",
                b"{\\rtf": "text/rtf", b"\x89PNG": "image/png", b"GIF8": "image/gif", b"PK\x03\x04": "application/zip",
                b"<?xml": "text/xml", b"<html": "text/html", b"<!DOC": "text/html"}


@dataclass(frozen=True)
class Body:
    """What a level-1 body holds: the declared media type and the decoded content."""

    media_type: str
    representation: str
    content: bytes | None  # None: not decodable
    location: str


def is_level1(root: etree._Element) -> bool:
    return root.find("cda:component/cda:nonXMLBody", NS) is not None


def sniff(content: bytes) -> str | None:
    """The media type the first bytes show, when they show one."""
    return next((name for magic, name in _MAGIC_NAMES.items() if content.startswith(magic)), None)


def _plain_text(content: bytes) -> bool:
    if b"\x00" in content[:4096]:
        return False
    for encoding in ("utf-8", "cp1252"):
        try:
            content.decode(encoding)
            return True
        except UnicodeDecodeError:
            continue
    return False


def read_body(root: etree._Element, base: str = "/ClinicalDocument") -> tuple[Body | None, list[Problem]]:
    """The level-1 body of ``root`` (a ClinicalDocument with a ``nonXMLBody``) and what is
    wrong with it as a body: no inline text, an unknown media type, content that is not
    base64."""
    where = f"{base}/component/nonXMLBody/text"
    text = root.find("cda:component/cda:nonXMLBody/cda:text", NS)
    if text is None:
        return None, [Problem("CDA-N1-02", Severity.ERROR, where, M("n1.no_text"))]
    if text.find("cda:reference", NS) is not None:
        return None, [Problem("CDA-N1-02", Severity.ERROR, f"{where}/reference", M("n1.reference"))]
    media_type = (text.get("mediaType") or "text/plain").strip().lower()
    representation = (text.get("representation") or "TXT").strip().upper()
    problems = []
    if media_type not in MEDIA_TYPES:
        problems.append(Problem("CDA-N1-03", Severity.ERROR, f"{where}/@mediaType", M("n1.media_type", media_type=media_type, allowed=", ".join(MEDIA_TYPES))))
    if len(text):
        return None, problems + [Problem("CDA-N1-02", Severity.ERROR, where, M("n1.markup"))]
    raw = (text.text or "").encode("utf-8")
    if representation == "B64":
        try:
            content: bytes | None = binascii.a2b_base64(_WHITESPACE.sub(b"", raw), strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            content = None
            problems.append(Problem("CDA-N1-04", Severity.ERROR, where, M("n1.not_base64", error=str(exc))))
    elif representation == "TXT":
        content = raw
        if media_type != "text/plain":
            problems.append(Problem("CDA-N1-04", Severity.ERROR, f"{where}/@representation", M("n1.binary_as_text", media_type=media_type)))
    else:
        content = None
        problems.append(Problem("CDA-N1-04", Severity.ERROR, f"{where}/@representation", M("n1.representation", representation=representation)))
    return Body(media_type, representation, content, where), problems


def check(root: etree._Element, base: str = "/ClinicalDocument") -> tuple[Body | None, list[Problem]]:
    """Every rule of the level-1 model for a document with a ``nonXMLBody``: the three
    templateIds and no other, an inline body, a known media type, content that decodes
    and whose first bytes are the media type's."""
    problems: list[Problem] = []
    templates = [(t.get("root") or "").strip() for t in root.findall("cda:templateId", NS)]
    expected = (*HEADER_TEMPLATES, N1_TEMPLATE)
    missing = [t for t in expected if t not in templates]
    extra = [t for t in templates if t not in expected]
    if missing or extra:
        problems.append(Problem("CDA-N1-01", Severity.ERROR, f"{base}/templateId",
                                M("n1.templates", missing=", ".join(missing) or "-", extra=", ".join(extra) or "-")))
    body, found = read_body(root, base)
    problems += found
    if body is None or body.content is None:
        return body, problems
    if not body.content:
        problems.append(Problem("CDA-N1-05", Severity.ERROR, body.location, M("n1.empty")))
        return body, problems
    magic = MEDIA_TYPES.get(body.media_type)
    shown = sniff(body.content)
    if magic is not None and not body.content.startswith(magic):
        problems.append(Problem("CDA-N1-05", Severity.ERROR, body.location,
                                M("n1.magic", media_type=body.media_type, shown=shown or M("n1.unknown_content"), first=body.content[:8].hex(" "))))
    elif body.media_type == "text/plain" and (shown not in (None, "text/xml", "text/html") or not _plain_text(body.content)):
        problems.append(Problem("CDA-N1-05", Severity.ERROR, body.location, M("n1.not_text", shown=shown or M("n1.unknown_content"))))
    return body, problems
