"""An MSSanté message as sent by software: MIME structure, the IHE XDM attachment, the
subject convention, the addresses. A pure domain library: functions of the message's bytes
(and of the target's settings), used by the collector to find the archive and by the checks
to judge, live and in replay alike.

Conventions (ANS, MSSanté, échanges de documents entre logiciels; IHE ITI TF-1 16 XDM):
the archive is attached once, named ``IHE_XDM.ZIP``, ``application/zip``, base64; a
human-readable copy (a PDF) is often attached beside it; the subject of a document sent
from software to software reads ``XDM/1.0/DDM+<title> <NAME> <given name> <birth date>``;
every address is in an MSSanté domain (``*.mssante.fr``, or what the target declares).
"""
from __future__ import annotations

import binascii
import email
import email.policy
import re
import unicodedata
from dataclasses import dataclass, field
from email.message import EmailMessage

from harness import Problem, Severity, catalogue

M = catalogue(__name__)

XDM_NAME = "IHE_XDM.ZIP"
XDM_TYPE = "application/zip"
SUBJECT_PREFIX = "XDM/1.0/DDM"
DEFAULT_DOMAINS = ("mssante.fr",)
REQUIRED_HEADERS = (("From", Severity.ERROR), ("To", Severity.ERROR), ("Date", Severity.ERROR), ("Subject", Severity.ERROR),
                    ("MIME-Version", Severity.ERROR), ("Message-ID", Severity.WARNING))
MAX_PARTS = 200  # parts looked at in one message
# RFC 5321/5322 address: a dot-atom local part (or a quoted one) and a domain of labels
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"^(?:{_ATOM}(?:\.{_ATOM})*|\"(?:[^\"\\\r\n]|\\.)+\")$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_DATES = (re.compile(r"^(\d{2})/(\d{2})/(\d{4})$"), re.compile(r"^(\d{4})(\d{2})(\d{2})$"), re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"))


@dataclass
class Part:
    path: str  # MIME part number: 1, 2, 2.1...
    content_type: str
    filename: str | None
    disposition: str | None
    encoding: str
    payload: bytes | None = None  # decoded, for the XDM archive and the human copy
    decode_error: str | None = None


@dataclass
class MailReading:
    subject: str = ""
    headers: dict[str, list[str]] = field(default_factory=dict)
    parts: list[Part] = field(default_factory=list)
    xdm: list[Part] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def fail(self, rule: str, location: str, message, severity: Severity = Severity.ERROR) -> None:
        self.problems.append(Problem(rule, severity, location, message))


def _decode(part: EmailMessage) -> tuple[bytes | None, str | None]:
    """The part's bytes, decoded strictly (base64 with a wrong alphabet or padding is an error)."""
    cte = (part.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    raw = part.get_payload(decode=False)
    if not isinstance(raw, str):
        return None, "multipart"
    if cte == "base64":
        try:
            return binascii.a2b_base64(re.sub(r"\s+", "", raw).encode("ascii"), strict_mode=True), None
        except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
            return None, str(exc)
    data = part.get_payload(decode=True)
    return (data if isinstance(data, bytes) else None), None


def _header(msg: EmailMessage, name: str, r: MailReading) -> list[str]:
    try:
        return [str(v) for v in msg.get_all(name, [])]
    except Exception as exc:  # a header the parser cannot even represent
        r.fail("MSS-MIME-01", f"header {name}", M("mail.header_unreadable", header=name, error=f"{type(exc).__name__}: {exc}"))
        return []


def read(raw: bytes, *, human_copy: bool = False) -> MailReading:
    """The message's structure and attachments; every departure is a problem."""
    r = MailReading()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for name in ("From", "To", "Cc", "Date", "Subject", "Message-ID", "MIME-Version", "Sender", "Reply-To"):
        values = _header(msg, name, r)
        if values:
            r.headers[name] = values
    for name, severity in REQUIRED_HEADERS:
        if name not in r.headers:
            r.fail("MSS-MIME-02", f"header {name}", M("mail.missing_header", header=name), severity)
    r.subject = (r.headers.get("Subject") or [""])[0]
    for defect in msg.defects:
        r.fail("MSS-MIME-01", "message", M("mail.defect", defect=type(defect).__name__, detail=str(defect)[:200]))
    if not msg.is_multipart():
        r.fail("MSS-MIME-03", "message", M("mail.not_multipart", content_type=msg.get_content_type()))
    elif msg.get_content_subtype() != "mixed":
        r.fail("MSS-MIME-03", "message", M("mail.not_mixed", content_type=msg.get_content_type()), Severity.WARNING)
    _walk(msg, "", r)
    if not any(p.content_type in ("text/plain", "text/html") and p.filename is None for p in r.parts):
        r.fail("MSS-MIME-04", "message", M("mail.no_text"), Severity.WARNING)
    _attachment(r)
    if human_copy:
        _human_copy(r)
    return r


def _walk(msg: EmailMessage, path: str, r: MailReading) -> None:
    if msg.is_multipart():
        children = msg.get_payload()
        for n, child in enumerate(children if isinstance(children, list) else [], 1):
            if len(r.parts) >= MAX_PARTS:
                r.fail("MSS-MIME-01", f"part {path}{n}", M("mail.too_many_parts", limit=MAX_PARTS))
                return
            _walk(child, f"{path}{n}.", r)
        return
    where = path.rstrip(".") or "1"
    for defect in msg.defects:
        r.fail("MSS-MIME-01", f"part {where}", M("mail.defect", defect=type(defect).__name__, detail=str(defect)[:200]))
    try:
        filename = msg.get_filename()
    except Exception:
        filename = None
    part = Part(where, msg.get_content_type(), filename, msg.get_content_disposition(),
                (msg.get("Content-Transfer-Encoding") or "7bit").strip().lower())
    r.parts.append(part)
    if filename is not None and (filename.upper() == XDM_NAME or part.content_type == "application/pdf"):
        part.payload, part.decode_error = _decode(msg)


def _attachment(r: MailReading) -> None:
    r.xdm = [p for p in r.parts if (p.filename or "").upper() == XDM_NAME]
    if not r.xdm:
        zips = [p.filename or p.path for p in r.parts if "zip" in p.content_type or (p.filename or "").lower().endswith(".zip")]
        r.fail("MSS-XDM-01", "message", M("xdm.none", found=", ".join(zips) or "-"))
        return
    if len(r.xdm) > 1:
        r.fail("MSS-XDM-01", "message", M("xdm.several", count=len(r.xdm), parts=", ".join(p.path for p in r.xdm)))
    for p in r.xdm:
        at = f"part {p.path} ({p.filename})"
        if p.filename != XDM_NAME:
            r.fail("MSS-XDM-02", at, M("xdm.name_case", name=p.filename, expected=XDM_NAME), Severity.WARNING)
        if p.content_type != XDM_TYPE:
            r.fail("MSS-XDM-02", at, M("xdm.media_type", media_type=p.content_type, expected=XDM_TYPE))
        if p.disposition != "attachment":
            r.fail("MSS-XDM-02", at, M("xdm.disposition", disposition=p.disposition or "-"), Severity.WARNING)
        if p.encoding != "base64":
            r.fail("MSS-XDM-03", at, M("xdm.encoding", encoding=p.encoding))
        if p.decode_error is not None:
            r.fail("MSS-XDM-03", at, M("xdm.undecodable", error=p.decode_error))


def _human_copy(r: MailReading) -> None:
    pdfs = [p for p in r.parts if p.content_type == "application/pdf" and p.filename is not None]
    if not pdfs:
        r.fail("MSS-HUMAN-01", "message", M("human.missing"))
    for p in pdfs:
        if p.payload is None or not p.payload.startswith(b"%PDF-"):
            r.fail("MSS-HUMAN-01", f"part {p.path} ({p.filename})", M("human.not_pdf"))


# -- subject ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    title: str
    rest: list[str]  # the words after the title candidates: NAME, given name(s), birth date
    birth: str | None  # YYYYMMDD


def _birth(token: str) -> str | None:
    for n, pattern in enumerate(_DATES):
        m = pattern.match(token)
        if m:
            return f"{m[3]}{m[2]}{m[1]}" if n == 0 else f"{m[1]}{m[2]}{m[3]}"
    return None


def check_subject(subject: str) -> tuple[str | None, list[Problem]]:
    """The part after ``XDM/1.0/DDM+`` (None when the convention is not followed)."""
    where = "header Subject"
    if not subject.startswith(SUBJECT_PREFIX):
        return None, [Problem("MSS-SUBJ-01", Severity.ERROR, where, M("subject.prefix", subject=subject[:200], prefix=SUBJECT_PREFIX))]
    rest = subject[len(SUBJECT_PREFIX):]
    if not rest.startswith("+") or not rest[1:].strip():
        return None, [Problem("MSS-SUBJ-01", Severity.ERROR, where, M("subject.no_content", subject=subject[:200]))]
    words = rest[1:].split()
    if len(words) < 4 or _birth(words[-1]) is None:
        return rest[1:].strip(), [Problem("MSS-SUBJ-01", Severity.ERROR, where, M("subject.shape", subject=subject[:200]))]
    return rest[1:].strip(), []


def fold(text: str) -> str:
    """Compared without regard to case, accents or repeated spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).casefold().split())


def subject_agreement(content: str, *, title: str, family: str, givens: list[str], birth: str, doc: str) -> list[Problem]:
    """The subject's ``<title> <NAME> <given name> <birth date>`` against the document;
    ``givens``: the given names a subject may show, the expected one first."""
    where = f"header Subject ↔ {doc}"
    words = content.split()
    said_birth = _birth(words[-1]) if words else None
    problems = []
    if said_birth is not None and birth and said_birth != birth[:8]:
        problems.append(Problem("MSS-SUBJ-02", Severity.ERROR, f"{where} /ClinicalDocument/recordTarget/patientRole/patient/birthTime",
                                M("subject.birth", said=words[-1], expected=birth[:8])))
    body = fold(" ".join(words[:-1]))
    people = [fold(f"{family} {g}") for g in givens] or [fold(family)]
    person = next((p for p in people if p and (body == p or body.endswith(" " + p))), None)
    if person is None:
        problems.append(Problem("MSS-SUBJ-02", Severity.ERROR, f"{where} /ClinicalDocument/recordTarget/patientRole/patient/name",
                                M("subject.patient", said=" ".join(words[:-1])[:200], expected=f"{family} {' '.join(givens[:1])}".strip())))
    elif fold(title) != body[: len(body) - len(person)].strip():
        problems.append(Problem("MSS-SUBJ-02", Severity.ERROR, f"{where} /ClinicalDocument/title",
                                M("subject.title", said=body[: len(body) - len(person)].strip()[:200], expected=title)))
    return problems


# -- addresses --------------------------------------------------------------------------


def well_formed(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    if not at or not local or len(address) > 254 or len(local) > 64:
        return False
    labels = domain.split(".")
    return bool(_LOCAL.match(local)) and len(labels) >= 2 and all(_LABEL.match(x) for x in labels)


def in_domains(address: str, domains: tuple[str, ...] | list[str]) -> bool:
    domain = address.rpartition("@")[2].lower().rstrip(".")
    return any(domain == d.lower() or domain.endswith("." + d.lower()) for d in domains)


def header_addresses(raw: bytes) -> list[tuple[str, str]]:
    """(header, address) of From, Sender, To and Cc; an unparsable one as its raw text."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    out = []
    for name in ("From", "Sender", "To", "Cc"):
        for value in msg.get_all(name, []):
            try:
                addresses = [a.addr_spec for a in value.addresses]
            except Exception:
                addresses = [str(value)]
            out += [(name, a) for a in addresses] or [(name, str(value))]
    return out


def check_addresses(headers: list[tuple[str, str]], envelope: tuple[str, list[str]] | None, domains) -> list[Problem]:
    problems = []
    seen = [(f"header {h}", a) for h, a in headers]
    if envelope is not None:
        seen += [("MAIL FROM", envelope[0])] + [("RCPT TO", a) for a in envelope[1]]
    for where, address in seen:
        if not well_formed(address):
            problems.append(Problem("MSS-ADDR-01", Severity.ERROR, where, M("address.malformed", address=address[:200])))
        elif not in_domains(address, domains):
            problems.append(Problem("MSS-ADDR-02", Severity.ERROR, where, M("address.domain", address=address, domains=", ".join(domains))))
    froms = [a for h, a in headers if h == "From"]
    if envelope is not None and froms and envelope[0] and envelope[0].lower() not in (f.lower() for f in froms):
        problems.append(Problem("MSS-ADDR-03", Severity.WARNING, "MAIL FROM ↔ header From", M("address.envelope", envelope=envelope[0], header=", ".join(froms))))
    return problems
