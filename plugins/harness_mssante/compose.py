"""Writing MSSanté messages: an IHE XDM archive for a CDA document (its metadata written from
the header by the XDS library, like a conformant sender) and the message that carries it.

Used by the receiving scenarios to write the catalogue of messages the harness delivers to
the software's mailbox, and by the demo vendor to write what it sends. ``faults`` names what
to get wrong, one rule family each (the demo's defects use the same names).
"""
from __future__ import annotations

import datetime as dt
import io
import uuid
import zipfile
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from lxml import etree

from harness import parse_xml
from harness_xds import agreement, ebrim

CLASS = ("10", "1.2.250.1.213.1.1.4.1", "Compte rendu")
STRUCTURED_FORMAT = ("urn:asip:ci-sis:2010", "1.2.250.1.213.1.1.4.2.282", "Document à corps structuré")
INSTITUTION = "Cabinet Démo^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^399999999900001"
SOURCE_ID = "1.2.250.1.999.1.3"
LARGE = 26 * 1024 * 1024  # the too-large fault's padding, above the simulator's default limit
KO_PREFIX = "[KO Intégration système !]"


@dataclass(frozen=True)
class Person:
    """Who the subject names: birth name, first given name, birth date (YYYYMMDD)."""

    family: str
    given: str
    birth: str


def metadata(data: bytes, faults: set[str] = frozenset(), recipient: str = "") -> bytes:
    """METADATA.XML for one document stored as ``DOC0001.XML`` in ``SUBSET01``."""
    root = parse_xml(data, source="DOC0001.XML").getroot()
    entry = agreement.derive("Document01", data, root, class_code=CLASS, format_code=STRUCTURED_FORMAT, institution=INSTITUTION)
    entry.slots["URI"] = ["SUBSET01/DOC0001.XML" if "mss-uri-from-root" in faults else "DOC0001.XML"]
    if "mss-hash" in faults:
        entry.slots["hash"] = ["da39a3ee5e6b4b0d3255bfef95601890afd80709"]
    if "mss-size" in faults:
        entry.slots["size"] = [str(len(data) + 17)]
    if "mss-meta-no-author" in faults:
        entry.authors = []
    if "mss-meta-type-code" in faults:
        entry.coded["typeCode"] = [("11490-0", "2.16.840.1.113883.6.1", "Lettre de liaison à la sortie d'un établissement de soins")]
    if "mss-missing-document" in faults:
        entry.slots["URI"] = ["DOC0002.XML"]
    patient = entry.identifiers["patientId"]
    slots = {"submissionTime": [dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S")]}
    if recipient:
        slots["intendedRecipient"] = [f"^^Internet^{recipient}"]
    ss = ebrim.NewObject("SubmissionSet01", slots=slots, coded={"contentTypeCode": [("04", "1.2.250.1.213.2.2", "Hospitalisation de jour")]},
                         identifiers={"patientId": patient, "sourceId": SOURCE_ID, "uniqueId": f"{SOURCE_ID}.{uuid.uuid4().int % 10**12}"},
                         authors=[{"authorInstitution": [INSTITUTION]}])
    xml = etree.tostring(ebrim.write_submission(ss, [entry]), xml_declaration=True, encoding="UTF-8")
    if "mss-meta-malformed" in faults:  # a prefix used but never declared, as in a sample seen in the wild
        start = xml.index(b'<rim:Slot name="URI">')
        end = xml.index(b"</rim:Slot>", start) + len(b"</rim:Slot>")
        xml = xml[:start] + xml[start:end].replace(b"rim:Slot", b"ns3:Slot") + xml[end:]
    return xml


def archive(data: bytes, faults: set[str] = frozenset(), recipient: str = "", title: str = "Document") -> bytes:
    """The XDM archive: README.TXT, INDEX.HTM, IHE_XDM/SUBSET01/METADATA.XML and DOC0001.XML."""
    if "mss-not-zip" in faults:
        return b"%PDF-1.4 ceci n'est pas une archive\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("README.TXT", "Archive IHE XDM (MSSanté).\r\n")
        if "mss-no-index" not in faults:
            zf.writestr("INDEX.HTM", f'<html><body><a href="IHE_XDM/SUBSET01/DOC0001.XML">{title}</a></body></html>')
        zf.writestr("IHE_XDM/SUBSET01/METADATA.XML", metadata(data, faults, recipient))
        zf.writestr("IHE_XDM/SUBSET01/DOC0001.XML", data)
        if "mss-unlisted" in faults:
            zf.writestr("IHE_XDM/SUBSET01/NOTES.TXT", "brouillon\r\n")
        if "mss-path-escape" in faults:
            zf.writestr("../../ECHAPPE.TXT", "hors de l'archive\r\n")
    return buf.getvalue()


def message(data: bytes, *, sender: str, recipient: str, title: str, person: Person, faults: set[str] = frozenset(),
            pdf: bytes | None = None, text: str = "Veuillez trouver ci-joint le document.\n", domain: str = "mssante.fr") -> bytes:
    """The message carrying ``data`` in its XDM archive (and ``pdf``, the readable copy), as
    SMTP sends it (CRLF line ends)."""
    birth = f"{person.birth[6:8]}/{person.birth[4:6]}/{person.birth[:4]}"
    subject = f"{title} {person.family} {person.given.title()} {birth}"
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Date"] = format_datetime(dt.datetime.now(dt.timezone.utc))
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].rstrip(">") or domain)
    msg["Subject"] = subject if "mss-subject" in faults else f"XDM/1.0/DDM+{subject}"
    msg.set_content(text)
    if "mss-no-attachment" not in faults:
        maintype, subtype = ("application", "octet-stream") if "mss-attachment-type" in faults else ("application", "zip")
        msg.add_attachment(archive(data, faults, recipient, title), maintype=maintype, subtype=subtype, filename="IHE_XDM.ZIP")
    if pdf is not None and "mss-no-human-copy" not in faults:
        msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="document.pdf")
    if "mss-too-large" in faults:
        msg.add_attachment(b"\0" * LARGE, maintype="application", subtype="octet-stream", filename="imagerie.bin")
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))  # SMTP lines end with CRLF
    if "mss-broken-mime" in faults:  # the closing boundary is lost
        raw = raw.replace(b"--" + msg.get_boundary().encode() + b"--", b"")
    return raw
