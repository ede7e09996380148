"""Patient identities in HL7 v2 messages (PAM-France, document transmission), read safely.

A message from the vendor is untrusted: any bytes must give findings, never an exception.
The framing is checked before the ``hl7`` library parses: MLLP envelope, MSH first, the
standard separators, carriage returns between segments (line feeds are accepted with a
warning, as many files are stored that way). Then each PID gives one identity:

* PID-3 repetitions: identifier (1), assigning authority namespace & OID & type (4),
  identifier type code (5: ``INS``, ``PI``...);
* PID-5 the name of type ``L`` (birth name): family (1), first given name (2), list of
  given names (3, separated by spaces);
* PID-7 birth date, PID-8 sex, PID-11 the address of type ``BDL`` (birth place): INSEE
  code in component 9;
* PID-32 identity reliability: the status (PROV, RECUP, VALI, QUAL) and the attributes
  (DOUT, FICT, HOMD, HOMA), as repetitions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness import Problem, Severity, catalogue

from .identity import Traits

M = catalogue(__name__)

MLLP_START, MLLP_END = b"\x0b", b"\x1c\x0d"
STANDARD_SEPARATORS = "|^~\\&"


@dataclass
class Identifier:
    value: str
    namespace: str
    system: str  # the assigning authority's universal id (an OID for INS)
    type_code: str
    location: str


@dataclass
class Hl7Identity:
    """One patient as a message carries it."""

    location: str  # "PID" or "PID[2]"
    identifiers: list[Identifier] = field(default_factory=list)
    traits: Traits = field(default_factory=Traits)
    status: str | None = None
    attributes: list[str] = field(default_factory=list)


@dataclass
class Hl7Message:
    """What one message holds: its type and control id, its patients, what is wrong with it."""

    message_type: str = ""
    control_id: str = ""
    identities: list[Hl7Identity] = field(default_factory=list)
    problems: list[tuple[str, Problem]] = field(default_factory=list)  # (location, problem)

    @property
    def readable(self) -> bool:
        return not any(p.severity.fails for loc, p in self.problems if p.rule.startswith("HL7-"))


_MESSAGE_START = re.compile(rb"(?:^|(?<=[\r\n]))\x0b?MSH")


def split_messages(data: bytes) -> list[bytes]:
    """The messages of a file: one per MSH at a segment start (a file may hold several)."""
    starts = [m.start() for m in _MESSAGE_START.finditer(data)]
    if len(starts) <= 1:
        return [data]
    if starts[0] > 0 and data[:starts[0]].strip():
        starts.insert(0, 0)
    else:
        starts[0] = 0
    return [data[a:b] for a, b in zip(starts, starts[1:] + [len(data)])]


def _decode(data: bytes, msg: Hl7Message) -> str | None:
    if b"\x00" in data:
        msg.problems.append(("message", Problem("HL7-ENC-01", Severity.ERROR, message=M("hl7.nul"))))
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
        msg.problems.append(("message", Problem("HL7-ENC-02", Severity.WARNING, message=M("hl7.latin1"))))
        return text


def _segments(text: str, msg: Hl7Message) -> str | None:
    text = text.strip("\x0b\x1c\r\n ")
    if "\r" not in text and "\n" in text:
        msg.problems.append(("message", Problem("HL7-SEG-01", Severity.WARNING, message=M("hl7.line_feeds"))))
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    if not text.startswith("MSH"):
        msg.problems.append(("MSH", Problem("HL7-MSH-01", Severity.ERROR, message=M("hl7.no_msh"))))
        return None
    if len(text) < 8 or text[3:8] != STANDARD_SEPARATORS:
        separators = text[3:8]
        if len(separators) < 5 or len(set(separators)) < 5 or any(c.isalnum() or c in "\r " for c in separators):
            msg.problems.append(("MSH-1", Problem("HL7-MSH-02", Severity.ERROR, message=M("hl7.bad_separators", separators=separators))))
            return None
        msg.problems.append(("MSH-1", Problem("HL7-MSH-02", Severity.WARNING, message=M("hl7.odd_separators", separators=separators, expected=STANDARD_SEPARATORS))))
    return text


def _component(field_value, rep: int, comp: int, sub: int = 0) -> str:
    """Component ``comp`` (1-based) of repetition ``rep`` (0-based) of a parsed field, or ''."""
    try:
        repetition = field_value[rep]
        if isinstance(repetition, str):
            return repetition if comp == 1 and sub == 0 else ""
        component = repetition[comp - 1]
        if isinstance(component, str):
            return component if sub in (0, 1) else ""
        return str(component[sub - 1] if sub else component).strip()
    except (IndexError, TypeError, KeyError):
        return ""


def _repetitions(segment, index: int) -> list:
    try:
        value = segment[index]
    except (IndexError, KeyError):
        return []
    if isinstance(value, str):
        return [[value]] if value else []
    return [r for r in value if str(r)]


def read_message(data: bytes) -> Hl7Message:
    """Parse one message; every problem found is in ``problems``, nothing is raised."""
    import hl7

    msg = Hl7Message()
    text = _decode(data, msg)
    text = _segments(text, msg) if text is not None else None
    if text is None:
        return msg
    try:
        parsed = hl7.parse(text)
        msh = parsed.segment("MSH")
        msg.message_type = "^".join(str(c) for c in msh[9][0]) if not isinstance(msh[9][0], str) else str(msh[9][0])
        msg.control_id = str(msh[10])
        pids = [s for s in parsed if str(s[0]) == "PID"]
    except Exception as exc:  # the library's errors vary with the damage; all mean "unreadable"
        msg.problems.append(("message", Problem("HL7-PARSE-01", Severity.ERROR, message=M("hl7.unreadable", error=str(exc)))))
        return msg
    for n, pid in enumerate(pids, 1):
        msg.identities.append(_identity(pid, "PID" if len(pids) == 1 else f"PID[{n}]"))
    return msg


def _identity(pid, where: str) -> Hl7Identity:
    ident = Hl7Identity(where)
    for r, _ in enumerate(_repetitions(pid, 3)):
        field3 = pid[3]
        ident.identifiers.append(Identifier(
            value=_component(field3, r, 1), namespace=_component(field3, r, 4, 1), system=_component(field3, r, 4, 2),
            type_code=_component(field3, r, 5), location=f"{where}-3[{r + 1}]",
        ))
    names = _repetitions(pid, 5)
    birth = next((r for r in range(len(names)) if _component(pid[5], r, 7) == "L"), None)
    if birth is not None:
        listed = _component(pid[5], birth, 3)
        ident.traits.birth_name = _component(pid[5], birth, 1) or None
        ident.traits.first_given_name = _component(pid[5], birth, 2) or None
        ident.traits.given_names = listed.split() if listed else []
    ident.traits.birth_date = (_component(pid[7], 0, 1) if _repetitions(pid, 7) else "")[:8] or None
    ident.traits.sex = (_component(pid[8], 0, 1) if _repetitions(pid, 8) else "") or None
    for r, _ in enumerate(_repetitions(pid, 11)):
        if _component(pid[11], r, 7) == "BDL":
            ident.traits.birth_place = _component(pid[11], r, 9) or None
    codes = [_component(pid[32], r, 1) for r, _ in enumerate(_repetitions(pid, 32))]
    codes = [c.strip().upper() for c in codes if c and c.strip()]
    if codes:
        ident.status = codes[0]
        ident.attributes = codes[1:]
    return ident


# Where each rule's subject lives in a PID segment.
_TRAIT_FIELD = {"INS-TRA-01": 5, "INS-TRA-02": 5, "INS-TRA-03": 5, "INS-TRA-04": 8, "INS-TRA-05": 7, "INS-TRA-06": 11}


def check_message(msg: Hl7Message) -> list[tuple[str, Problem]]:
    """Every INS rule applied to every patient of a message, with HL7 v2 locations.

    The issuing system's class (a production OID in a demo) is the data-protection check's
    business, not this one's: see :func:`harness_ins.identity.production_problem`.
    """
    from .identity import check_coherence, check_matricule, check_status, check_traits, classify_system

    out = list(msg.problems)
    for ident in msg.identities:
        ins = []
        for i in ident.identifiers:
            system = classify_system(i.system)
            if not system.is_ins and i.type_code.upper() != "INS":
                continue
            ins.append(i)
            out += [(i.location, p) for p in check_matricule(i.value)]
            if not system.is_ins:
                out.append((i.location, Problem("INS-SYS-02", Severity.ERROR, message=M("hl7.ins_authority", authority=i.system or M("authority.missing")))))
            out += [(i.location, p) for p in check_coherence(i.value, ident.traits)]
        for p in check_status(ident.status, ident.attributes, ins_shared=bool(ins)):
            if p.rule == "INS-STA-04" and (ident.status or "").strip().upper() in ("VALI", "RECUP"):
                # Both sources, and the severity they support: the INS guide reserves the INS
                # to qualified identities; the PAM-France examples send it with VALI inside a
                # facility, where the status travels with it so that each system knows it.
                p = Problem(p.rule, Severity.WARNING, message=M("hl7.ins_vali", problem=p.message))
            elif p.rule == "INS-STA-04":
                # PROV: neither retrieved from the INSi teleservice (that makes it RECUP at
                # least) nor checked against a document. No source, the PAM-France examples
                # included, sends an INS for such an identity: it cannot be a verified INS.
                p = Problem(p.rule, Severity.ERROR, message=M("hl7.ins_prov", problem=p.message))
            out.append((f"{ident.location}-32", p))
        out += [(f"{ident.location}-{_TRAIT_FIELD[p.rule]}", p) for p in check_traits(ident.traits)]
    return out
