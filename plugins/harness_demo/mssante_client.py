"""The demo vendor's MSSanté client: what practice software does when it sends a document to
a colleague through its MSSanté operator.

Asked by ``POST /mssante/send`` (``{"host", "port", "tls", "certificate"}``), it writes a
consultation note (CDA) about the qualified test patient, its XDM archive (README.TXT,
INDEX.HTM, IHE_XDM/SUBSET01/METADATA.XML and DOC0001.XML; metadata written by the
harness's XDS library from the header, like a conformant sender), and a message carrying the
archive and a PDF copy, and sends it over SMTP with STARTTLS and a login. Each defect
changes one thing.
"""
from __future__ import annotations

import datetime as dt
import io
import smtplib
import ssl
import uuid
import zipfile
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from lxml import etree

from harness import parse_xml
from harness_xds import agreement, ebrim

from .patients import PATIENTS, PDF, cda_document

SENDER = "secretariat@cabinet-demo.mssante.fr"
RECIPIENT = "dr.destinataire@hopital-demo.mssante.fr"
LOGIN, PASSWORD = "cabinet-demo", "mot-de-passe-de-demo"  # the simulator keeps the login, never the password
CLASS = ("10", "1.2.250.1.213.1.1.4.1", "Compte rendu")
STRUCTURED_FORMAT = ("urn:asip:ci-sis:2010", "1.2.250.1.213.1.1.4.2.282", "Document à corps structuré")
INSTITUTION = "Cabinet Démo^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^399999999900001"
SOURCE_ID = "1.2.250.1.999.1.3"
TIMEOUT = 20.0  # seconds, each SMTP exchange
LARGE = 26 * 1024 * 1024  # the too-large defect's padding, above the simulator's default limit


def _metadata(data: bytes, defects: set[str]) -> bytes:
    root = parse_xml(data, source="DOC0001.XML").getroot()
    entry = agreement.derive("Document01", data, root, class_code=CLASS, format_code=STRUCTURED_FORMAT, institution=INSTITUTION)
    entry.slots["URI"] = ["SUBSET01/DOC0001.XML" if "mss-uri-from-root" in defects else "DOC0001.XML"]
    if "mss-hash" in defects:
        entry.slots["hash"] = ["da39a3ee5e6b4b0d3255bfef95601890afd80709"]
    if "mss-size" in defects:
        entry.slots["size"] = [str(len(data) + 17)]
    if "mss-meta-no-author" in defects:
        entry.authors = []
    if "mss-meta-type-code" in defects:
        entry.coded["typeCode"] = [("11490-0", "2.16.840.1.113883.6.1", "Lettre de liaison à la sortie d'un établissement de soins")]
    if "mss-missing-document" in defects:
        entry.slots["URI"] = ["DOC0002.XML"]
    patient = entry.identifiers["patientId"]
    ss = ebrim.NewObject("SubmissionSet01", slots={"submissionTime": [dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S")],
                                                   "intendedRecipient": [f"^^Internet^{RECIPIENT}"]},
                         coded={"contentTypeCode": [("04", "1.2.250.1.213.2.2", "Hospitalisation de jour")]},
                         identifiers={"patientId": patient, "sourceId": SOURCE_ID, "uniqueId": f"{SOURCE_ID}.{uuid.uuid4().int % 10**12}"},
                         authors=[{"authorInstitution": [INSTITUTION]}])
    xml = etree.tostring(ebrim.write_submission(ss, [entry]), xml_declaration=True, encoding="UTF-8")
    if "mss-meta-malformed" in defects:  # a prefix used but never declared, as in a sample seen in the wild
        start = xml.index(b'<rim:Slot name="URI">')
        end = xml.index(b"</rim:Slot>", start) + len(b"</rim:Slot>")
        xml = xml[:start] + xml[start:end].replace(b"rim:Slot", b"ns3:Slot") + xml[end:]
    return xml


def _archive(data: bytes, defects: set[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("README.TXT", "Cabinet Démo 3.2.1 - Éditeur Exemple SAS\r\nArchive IHE XDM.\r\n")
        if "mss-no-index" not in defects:
            zf.writestr("INDEX.HTM", "<html><body><a href=\"IHE_XDM/SUBSET01/DOC0001.XML\">Note de consultation</a></body></html>")
        zf.writestr("IHE_XDM/SUBSET01/METADATA.XML", _metadata(data, defects))
        zf.writestr("IHE_XDM/SUBSET01/DOC0001.XML", data)
        if "mss-unlisted" in defects:
            zf.writestr("IHE_XDM/SUBSET01/NOTES.TXT", "brouillon\r\n")
        if "mss-path-escape" in defects:
            zf.writestr("../../ECHAPPE.TXT", "hors de l'archive\r\n")
    return buf.getvalue()


def message(defects: set[str], release: str = "3.2.1") -> bytes:
    """The message the demo sends, as bytes."""
    patient = PATIENTS[0]
    data = cda_document(patient, defects, 201, release=release, when="20261102093000+0100")
    title = "Note de consultation"
    birth = f"{patient.birth_date[6:8]}/{patient.birth_date[4:6]}/{patient.birth_date[:4]}"
    who = PATIENTS[1] if "mss-subject-patient" in defects else patient
    subject = f"{title} {who.birth_name} {who.first_given.title()} {birth}"
    msg = EmailMessage()
    msg["From"] = f"Cabinet Démo <{SENDER}>"
    msg["To"] = "dr.destinataire@gmail.com" if "mss-address-domain" in defects else RECIPIENT
    msg["Date"] = format_datetime(dt.datetime.now(dt.timezone.utc))
    msg["Message-ID"] = make_msgid(domain="cabinet-demo.mssante.fr")
    msg["Subject"] = subject if "mss-subject" in defects else f"XDM/1.0/DDM+{subject}"
    msg.set_content("Bonjour,\n\nVeuillez trouver ci-joint la note de consultation.\n\nCabinet Démo\n")
    if "mss-no-attachment" not in defects:
        maintype, subtype = ("application", "octet-stream") if "mss-attachment-type" in defects else ("application", "zip")
        msg.add_attachment(_archive(data, defects), maintype=maintype, subtype=subtype, filename="IHE_XDM.ZIP")
    if "mss-no-human-copy" not in defects:
        msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="note-de-consultation.pdf")
    if "mss-too-large" in defects:
        msg.add_attachment(b"\0" * LARGE, maintype="application", subtype="octet-stream", filename="imagerie.bin")
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))  # SMTP lines end with CRLF
    if "mss-broken-mime" in defects:  # the closing boundary is lost
        boundary = msg.get_boundary().encode()
        raw = raw.replace(b"--" + boundary + b"--", b"")
    return raw


def send(host: str, port: int, tls: str, certificate: str | None, defects: set[str], release: str) -> dict:
    raw = message(defects, release)
    try:
        with smtplib.SMTP(host, port, timeout=TIMEOUT, local_hostname="cabinet-demo.local") as smtp:
            smtp.ehlo()
            if tls != "plain" and "mss-plain" not in defects:
                smtp.starttls(context=ssl.create_default_context(cafile=certificate))
                smtp.ehlo()
                smtp.login(LOGIN, PASSWORD)
            refused = smtp.sendmail(SENDER, [RECIPIENT if "mss-address-domain" not in defects else "dr.destinataire@gmail.com"], raw)
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        return {"state": "error", "reason": str(exc)[:300], "size": len(raw)}
    return {"state": "sent", "refused": sorted(refused), "size": len(raw)}
