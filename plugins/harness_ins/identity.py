"""The national health identity (INS): one set of rules for every channel that carries it.

HL7 v2, CDA and FHIR plugins read an identity their own way, then ask this module whether
it is right: the matricule (NIR or NIA, 13 characters and a 2-digit key), the system that
issued it (production, test or demo OID), the identity status and attributes, and the
strict identity traits. Each answer is a list of :class:`Problem` (empty when all is
well); the channel plugin adds the location and turns it into a finding.

Sources: the INS guide and the RNIV (référentiel national d'identitovigilance), as
summarised in the project's domain notes. The Corsica substitution (2A -> 19, 2B -> 18
before the key is computed) is common practice, not found in an official text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from typing import Iterable

from harness import Localized, Problem, Severity, catalogue

M = catalogue(__name__)

INS_NIR = "1.2.250.1.213.1.4.8"
INS_NIA = "1.2.250.1.213.1.4.9"
TEST_NIR = "1.2.250.1.213.1.4.10"
DEMO_NIR = "1.2.250.1.213.1.4.11"

STATUSES = ("PROV", "RECUP", "VALI", "QUAL")
ATTRIBUTES = ("DOUT", "FICT", "HOMD", "HOMA")
SEXES = ("M", "F", "I")

_MATRICULE = re.compile(r"^[0-9]{5}(?:[0-9]{2}|2[AaBb])[0-9]{8}$")
_CORSICA = {"2A": "19", "2B": "18"}
_INSEE_PLACE = re.compile(r"^(?:[0-9]{2}|2[AB])[0-9]{3}$")
_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


class SystemClass(str, Enum):
    """Who issued an identifier, as far as a demo environment is concerned."""

    PRODUCTION = "production"
    TEST = "test"
    DEMO = "demo"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class InsSystem:
    oid: str
    kind: str | None  # "NIR", "NIA", or None when the system is not an INS one
    cls: SystemClass

    @property
    def is_ins(self) -> bool:
        return self.kind is not None


_SYSTEMS = {
    INS_NIR: ("NIR", SystemClass.PRODUCTION),
    INS_NIA: ("NIA", SystemClass.PRODUCTION),
    TEST_NIR: ("NIR", SystemClass.TEST),
    DEMO_NIR: ("NIR", SystemClass.DEMO),
}


def classify_system(system: str | None) -> InsSystem:
    """The INS system an OID names; ``urn:oid:`` (FHIR) and surrounding blanks are accepted."""
    oid = (system or "").strip()
    if oid.lower().startswith("urn:oid:"):
        oid = oid[8:]
    kind, cls = _SYSTEMS.get(oid, (None, SystemClass.UNKNOWN))
    return InsSystem(oid, kind, cls)


def production_problem(system: InsSystem) -> Problem | None:
    """INS-SYS-01: a production INS OID where only test or demo identities may appear."""
    if system.cls is not SystemClass.PRODUCTION:
        return None
    return Problem("INS-SYS-01", Severity.CRITICAL, message=M("sys.production", oid=system.oid, kind=system.kind, test=TEST_NIR, demo=DEMO_NIR))


# -- matricule ----------------------------------------------------------------------------


def matricule_key(body: str) -> int:
    """The control key of a 13-character matricule body: 97 - (number mod 97).

    Corsica departments are replaced (2A by 19, 2B by 18) before the number is read.
    """
    digits = body[:5] + _CORSICA.get(body[5:7].upper(), body[5:7]) + body[7:]
    if len(body) != 13 or not digits.isdigit():
        raise ValueError(f"not a matricule body: {body!r}")
    return 97 - int(digits) % 97


def check_matricule(value: str | None) -> list[Problem]:
    """Format (13 characters, Corsica allowed, then a 2-digit key) and key of a matricule."""
    text = (value or "").strip()
    if not _MATRICULE.match(text):
        return [Problem("INS-MAT-01", Severity.ERROR, message=M("mat.malformed", value=text))]
    expected = matricule_key(text[:13])
    if int(text[13:]) != expected:
        return [Problem("INS-MAT-02", Severity.ERROR, message=M("mat.key", key=text[13:], expected=expected))]
    return []


# -- status and attributes ----------------------------------------------------------------


def check_status(status: str | None, attributes: Iterable[str] = (), *, ins_shared: bool) -> list[Problem]:
    """Identity status (PROV, RECUP, VALI, QUAL) and attributes (DOUT, FICT, HOMD, HOMA).

    RECUP: retrieved from the INSi teleservice, not checked against an identity document;
    VALI: checked against a document, not retrieved; QUAL: both. Only a qualified identity
    may share its INS (``ins_shared``: the message or document carries the INS).
    """
    problems: list[Problem] = []
    code = (status or "").strip().upper()
    attrs = [a.strip().upper() for a in attributes if a and a.strip()]
    if not code:
        problems.append(Problem("INS-STA-01", Severity.ERROR, message=M("sta.missing", expected=", ".join(STATUSES))))
    elif code not in STATUSES:
        problems.append(Problem("INS-STA-01", Severity.ERROR, message=M("sta.unknown", status=status, expected=", ".join(STATUSES))))
    for a in attrs:
        if a not in ATTRIBUTES:
            problems.append(Problem("INS-STA-05", Severity.WARNING, message=M("sta.unknown_attribute", attribute=a, expected=", ".join(ATTRIBUTES))))
    if "DOUT" in attrs and "FICT" in attrs:
        problems.append(Problem("INS-STA-03", Severity.ERROR, message=M("sta.doubtful_fictitious")))
    forcing = [a for a in ("DOUT", "FICT") if a in attrs]
    if forcing and code in STATUSES and code != "PROV":
        problems.append(Problem("INS-STA-02", Severity.ERROR, message=M("sta.forced_prov", attributes="/".join(forcing), status=code)))
    if ins_shared and code in STATUSES and code != "QUAL":
        problems.append(Problem("INS-STA-04", Severity.ERROR, message=M("sta.not_qualified", status=code)))
    return problems


# -- strict traits ------------------------------------------------------------------------


@dataclass
class Traits:
    """The strict identity traits, as a channel carries them (None when absent)."""

    birth_name: str | None = None
    first_given_name: str | None = None
    given_names: list[str] = field(default_factory=list)  # the list, in order, first one first
    sex: str | None = None
    birth_date: str | None = None  # YYYY-MM-DD or YYYYMMDD
    birth_place: str | None = None  # INSEE code of the commune (or 99xxx: country)


def parse_date(text: str | None) -> date | None:
    m = _DATE.match((text or "").strip())
    if not m:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def check_traits(traits: Traits) -> list[Problem]:
    """Every strict trait present and well formed."""
    problems: list[Problem] = []

    def missing(rule: str, trait: Localized) -> None:
        problems.append(Problem(rule, Severity.ERROR, message=M("tra.missing", trait=trait)))

    if not (traits.birth_name or "").strip():
        missing("INS-TRA-01", M("trait.birth_name"))
    if not (traits.first_given_name or "").strip():
        missing("INS-TRA-02", M("trait.first_given_name"))
    names = [n.strip() for n in traits.given_names if n and n.strip()]
    if not names:
        missing("INS-TRA-03", M("trait.given_names"))
    elif (traits.first_given_name or "").strip() and names[0].upper() != traits.first_given_name.strip().upper():
        problems.append(Problem("INS-TRA-03", Severity.ERROR, message=M("tra.list_first", names=" ".join(names), first=traits.first_given_name)))
    sex = (traits.sex or "").strip().upper()
    if not sex:
        missing("INS-TRA-04", M("trait.sex"))
    elif sex not in SEXES:
        problems.append(Problem("INS-TRA-04", Severity.ERROR, message=M("tra.sex", sex=traits.sex)))
    if not (traits.birth_date or "").strip():
        missing("INS-TRA-05", M("trait.birth_date"))
    elif parse_date(traits.birth_date) is None:
        problems.append(Problem("INS-TRA-05", Severity.ERROR, message=M("tra.birth_date", date=traits.birth_date)))
    place = (traits.birth_place or "").strip().upper()
    if not place:
        missing("INS-TRA-06", M("trait.birth_place"))
    elif not _INSEE_PLACE.match(place):
        problems.append(Problem("INS-TRA-06", Severity.ERROR, message=M("tra.birth_place", place=traits.birth_place)))
    return problems


def check_coherence(matricule: str, traits: Traits) -> list[Problem]:
    """Sex and birth year/month written in a NIR agree with the traits (warnings).

    Only for a well-formed matricule whose first digit is 1 (man) or 2 (woman) and whose
    month is a calendar month: other values (NIA, foreign-born, unknown month) say nothing
    certain. A warning, not an error: the official test identity PAT-SIX Alain, born
    1996-01-24, has the matricule 162018885045327 (year 62).
    """
    text = (matricule or "").strip()
    if check_matricule(text) or text[0] not in "12":
        return []
    problems: list[Problem] = []
    sex = (traits.sex or "").strip().upper()
    written = "M" if text[0] == "1" else "F"
    if sex in ("M", "F") and sex != written:
        problems.append(Problem("INS-COH-01", Severity.WARNING, message=M("coh.sex", matricule=text, written=written, sex=sex)))
    born = parse_date(traits.birth_date)
    month = int(text[3:5])
    if born is not None and 1 <= month <= 12 and (born.year % 100, born.month) != (int(text[1:3]), month):
        problems.append(Problem("INS-COH-02", Severity.WARNING, message=M("coh.birth", matricule=text, month=text[3:5], year=text[1:3], born=born.isoformat())))
    return problems
