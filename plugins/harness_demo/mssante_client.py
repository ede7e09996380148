"""The demo vendor's MSSanté client: what practice software does when it sends a document to
a colleague through its MSSanté operator.

Asked by ``POST /mssante/send`` (``{"host", "port", "tls", "certificate"}``), it writes a
consultation note (CDA) about the qualified test patient, its XDM archive (README.TXT,
INDEX.HTM, IHE_XDM/SUBSET01/METADATA.XML and DOC0001.XML: :mod:`harness_mssante.compose`)
and a message carrying the archive and a PDF copy, and sends it over SMTP with STARTTLS and
a login. Each defect changes one thing.
"""
from __future__ import annotations

import smtplib
import ssl

from harness_mssante import compose

from .patients import PATIENTS, PDF, cda_document

SENDER = "secretariat@cabinet-demo.mssante.fr"
RECIPIENT = "dr.destinataire@hopital-demo.mssante.fr"
LOGIN, PASSWORD = "cabinet-demo", "mot-de-passe-de-demo"  # the simulator keeps the login, never the password
TIMEOUT = 20.0  # seconds, each SMTP exchange


def message(defects: set[str], release: str = "3.2.1", patient=None, n: int = 201) -> bytes:
    """The message the demo sends, as bytes: about the qualified test patient, or ``patient``."""
    patient = patient or PATIENTS[0]
    data = cda_document(patient, defects, n, release=release, when="20261102093000+0100")
    who = PATIENTS[1] if "mss-subject-patient" in defects else patient
    to = "dr.destinataire@gmail.com" if "mss-address-domain" in defects else RECIPIENT
    return compose.message(data, sender=f"Cabinet Démo <{SENDER}>", recipient=to, title="Note de consultation",
                           person=compose.Person(who.birth_name, who.first_given, patient.birth_date), faults=defects, pdf=PDF,
                           text="Bonjour,\n\nVeuillez trouver ci-joint la note de consultation.\n\nCabinet Démo\n")


def smtp_session(host: str, port: int, tls: str, certificate: str | None, plain: bool = False) -> smtplib.SMTP:
    smtp = smtplib.SMTP(host, port, timeout=TIMEOUT, local_hostname="cabinet-demo.local")
    smtp.ehlo()
    if tls != "plain" and not plain:
        smtp.starttls(context=ssl.create_default_context(cafile=certificate))
        smtp.ehlo()
        smtp.login(LOGIN, PASSWORD)
    return smtp


def send(host: str, port: int, tls: str, certificate: str | None, defects: set[str], release: str, patient=None) -> dict:
    raw = message(defects, release, patient, 201 if patient is None else 400 + int(patient.ipp[-3:]))
    try:
        with smtp_session(host, port, tls, certificate, plain="mss-plain" in defects) as smtp:
            refused = smtp.sendmail(SENDER, ["dr.destinataire@gmail.com" if "mss-address-domain" in defects else RECIPIENT], raw)
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        return {"state": "error", "reason": str(exc)[:300], "size": len(raw)}
    return {"state": "sent", "refused": sorted(refused), "size": len(raw)}
