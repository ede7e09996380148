"""The demo vendor's MSSanté inbox: what practice software does with the messages it receives.

Asked by ``POST /mssante/receive`` (``{"imap": {...}, "smtp": {...}}``: where its mailbox and
its operator's SMTP server are, the mailbox password in a file), it reads every unread message
over IMAP (STARTTLS), integrates the XDM archive it carries, and sends a
``[KO Intégration système !]`` mail to the sender, in reply to the message, when the archive
cannot be integrated: no archive, the safe reader refuses it, a listed document is missing or
its hash or size is not that of its bytes. Each defect changes one thing.
"""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import imaplib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from harness import SafeArchive, UnsafeInput
from harness_mssante import compose, mail
from harness_xds import xdm

from .mssante_client import SENDER, smtp_session

BLOCKING = ("XDM-ARC-00", "XDM-ARC-03", "XDM-URI-01", "XDM-HASH-01", "XDM-SIZE-01", "XDM-MD-00")
TIMEOUT = 10.0


def integrate(raw: bytes) -> str | None:
    """Why the message's archive cannot be integrated (None: integrated)."""
    reading = mail.read(raw)
    if len(reading.xdm) != 1 or reading.xdm[0].payload is None:
        return "pas d'archive IHE_XDM.ZIP lisible"
    try:
        with SafeArchive(reading.xdm[0].payload, limits=xdm.LIMITS) as archive:
            found = xdm.read(archive)
    except UnsafeInput as exc:
        return f"archive refusée : {exc.detail.texts()['fr']}"
    blocking = [p for p in found.problems if p.rule in BLOCKING]
    return "; ".join(p.message.texts()["fr"] for p in blocking) or None


def ko(original: EmailMessage, reason: str, to: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Cabinet Démo <{SENDER}>"
    msg["To"] = to
    msg["Date"] = format_datetime(dt.datetime.now(dt.timezone.utc))
    msg["Message-ID"] = make_msgid(domain="cabinet-demo.mssante.fr")
    msg["Subject"] = f"{compose.KO_PREFIX} {original.get('Subject', '')}"
    if original.get("Message-ID"):
        msg["In-Reply-To"] = original["Message-ID"]
        msg["References"] = original["Message-ID"]
    msg.set_content(f"Le message n'a pas pu être intégré : {reason}\n")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def receive(imap_conf: dict, smtp_conf: dict, defects: set[str]) -> dict:
    if "mss-recv-unread" in defects:
        return {"state": "ignored"}
    password = Path(imap_conf["password_file"]).read_text().strip()
    if "mss-recv-plain" in defects:  # a first login in clear, refused, then the right way
        clear = imaplib.IMAP4(imap_conf["host"], int(imap_conf["port"]), timeout=TIMEOUT)
        try:
            clear.login(imap_conf["user"], password)
        except (imaplib.IMAP4.error, OSError):
            pass
        finally:
            try:
                clear.logout()
            except (imaplib.IMAP4.error, OSError):
                pass
    box = imaplib.IMAP4(imap_conf["host"], int(imap_conf["port"]), timeout=TIMEOUT)
    handled = []
    try:
        if imap_conf.get("tls") != "plain":
            box.starttls(ssl.create_default_context(cafile=imap_conf.get("certificate")))
        box.login(imap_conf["user"], password)
        box.select("INBOX")
        status, found = box.search(None, "UNSEEN")
        numbers = found[0].split() if status == "OK" and found else []
        replies = []
        for number in numbers:
            status, data = box.fetch(number, "(RFC822)")  # marks it \Seen
            raw = next((item[1] for item in data if isinstance(item, tuple)), b"")
            original = email.message_from_bytes(raw, policy=email.policy.default)
            reason = integrate(raw)
            if "mss-recv-ko-all" in defects and reason is None:
                reason = "erreur d'intégration"
            if "mss-recv-silent" in defects:
                reason = None
            handled.append({"subject": str(original.get("Subject", "")), "integrated": reason is None})
            if reason is not None:
                sender = original["From"].addresses[0].addr_spec if original.get("From") else ""
                to = "support@cabinet-demo.mssante.fr" if "mss-recv-ko-elsewhere" in defects else sender
                replies.append((to, ko(original, reason, to)))
    finally:
        try:
            box.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
    if replies:
        with smtp_session(smtp_conf["host"], int(smtp_conf["port"]), smtp_conf.get("tls") or "starttls", smtp_conf.get("certificate")) as smtp:
            for to, data in replies:
                smtp.sendmail(SENDER, [to], data)
    return {"state": "done", "messages": handled}
