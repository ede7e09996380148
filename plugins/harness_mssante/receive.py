"""The receiving side: the catalogue of messages the harness delivers to the software's
mailbox, and what the software's replies say about each (integration acknowledgement,
``[KO Intégration système !]`` mail, or MDN, RFC 8098). A pure domain library."""
from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from importlib import resources

from . import compose

SENDER = "expediteur@operateur-harness.mssante.fr"
# (id, faults, what a conformant software does with it): each defect family of the archive
CATALOGUE = (
    ("conforme", frozenset(), "integrated"),
    ("empreinte", frozenset({"mss-hash"}), "rejected"),
    ("document-absent", frozenset({"mss-missing-document"}), "rejected"),
    ("chemin-echappe", frozenset({"mss-path-escape"}), "rejected"),
    ("pas-une-archive", frozenset({"mss-not-zip"}), "rejected"),
)
_ID = re.compile(r"<[^<>\s]+>")


@dataclass(frozen=True)
class Delivered:
    id: str
    expected: str
    faults: tuple[str, ...]
    message_id: str
    raw: bytes


def document() -> bytes:
    """The catalogue's document: a consultation note about the official test patient PAT-TROIS."""
    return resources.files(__package__).joinpath("catalogue/DOC0001.XML").read_bytes()


def catalogue(recipient: str) -> list[Delivered]:
    out = []
    for ident, faults, expected in CATALOGUE:
        raw = compose.message(document(), sender=SENDER, recipient=recipient, title="Note de consultation",
                              person=compose.Person("PAT-TROIS", "Dominique", "19790328"), faults=set(faults),
                              text=f"Message de contrôle « {ident} » du banc de conformité.\n")
        mid = email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]
        out.append(Delivered(ident, expected, tuple(sorted(faults)), str(mid).strip(), raw))
    return out


@dataclass(frozen=True)
class Reply:
    subject: str
    to: tuple[str, ...]
    refers_to: tuple[str, ...]  # Message-IDs it names (In-Reply-To, References, MDN Original-Message-ID)
    ko: bool
    kind: str  # "ko-mail", "mdn", "mail"
    disposition: str = ""


def read_reply(raw: bytes) -> Reply:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    subject = str(msg.get("Subject", "") or "")
    to = []
    for value in msg.get_all("To", []):
        try:
            to += [a.addr_spec.lower() for a in value.addresses]
        except Exception:
            to.append(str(value).lower())
    refs = _ID.findall(" ".join(str(v) for v in msg.get_all("In-Reply-To", []) + msg.get_all("References", [])))
    disposition = ""
    for part in msg.walk():
        if part.get_content_type() == "message/disposition-notification":
            payload = part.get_payload()
            text = payload if isinstance(payload, str) else "".join(
                p.as_string() if hasattr(p, "as_string") else str(p) for p in (payload if isinstance(payload, list) else [payload]))
            fields = email.message_from_string(text.strip() + "\n\n")
            refs += _ID.findall(str(fields.get("Original-Message-ID", "")))
            disposition = " ".join(str(fields.get("Disposition", "")).split())
    if disposition:
        action = disposition.split(";")[-1].strip().lower()  # e.g. automatic-action/MDN-sent-automatically; processed/error
        failed = action.startswith("deleted") or "/error" in action or "/failed" in action
        return Reply(subject, tuple(to), tuple(dict.fromkeys(refs)), failed, "mdn", disposition)
    ko = subject.strip().startswith(compose.KO_PREFIX)
    return Reply(subject, tuple(to), tuple(dict.fromkeys(refs)), ko, "ko-mail" if ko else "mail")
