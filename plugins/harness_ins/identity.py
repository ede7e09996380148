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

from harness import Severity

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


@dataclass(frozen=True)
class Problem:
    """One rule an identity breaks: rule id, severity, and the message in both languages."""

    rule: str
    severity: Severity
    fr: str
    en: str


def production_problem(system: InsSystem) -> Problem | None:
    """INS-SYS-01: a production INS OID where only test or demo identities may appear."""
    if system.cls is not SystemClass.PRODUCTION:
        return None
    return Problem(
        "INS-SYS-01", Severity.CRITICAL,
        f"OID de production {system.oid} ({system.kind}) : un environnement de démonstration ne montre que des OID de test "
        f"({TEST_NIR}) ou de démonstration ({DEMO_NIR}) ; une identité réelle dans des preuves est un incident de protection des données",
        f"Production OID {system.oid} ({system.kind}): a demo environment shows only test ({TEST_NIR}) or demo ({DEMO_NIR}) OIDs; "
        f"a real identity in evidence is a data-protection incident",
    )


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
        return [Problem(
            "INS-MAT-01", Severity.ERROR,
            f"Matricule INS mal formé : {text!r} (15 caractères attendus : 13 chiffres, 2A ou 2B pour la Corse, puis la clé)",
            f"Malformed INS matricule: {text!r} (15 characters expected: 13 digits, 2A or 2B for Corsica, then the key)",
        )]
    expected = matricule_key(text[:13])
    if int(text[13:]) != expected:
        return [Problem(
            "INS-MAT-02", Severity.ERROR,
            f"Clé du matricule INS fausse : {text[13:]} au lieu de {expected:02d}",
            f"Wrong INS matricule key: {text[13:]} instead of {expected:02d}",
        )]
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
        problems.append(Problem(
            "INS-STA-01", Severity.ERROR,
            f"Statut d'identité absent (attendu : {', '.join(STATUSES)})",
            f"Identity status missing (expected: {', '.join(STATUSES)})",
        ))
    elif code not in STATUSES:
        problems.append(Problem(
            "INS-STA-01", Severity.ERROR,
            f"Statut d'identité {status!r} inconnu (attendu : {', '.join(STATUSES)})",
            f"Unknown identity status {status!r} (expected: {', '.join(STATUSES)})",
        ))
    for a in attrs:
        if a not in ATTRIBUTES:
            problems.append(Problem(
                "INS-STA-05", Severity.WARNING,
                f"Attribut d'identité {a!r} inconnu (attendus : {', '.join(ATTRIBUTES)})",
                f"Unknown identity attribute {a!r} (expected: {', '.join(ATTRIBUTES)})",
            ))
    if "DOUT" in attrs and "FICT" in attrs:
        problems.append(Problem(
            "INS-STA-03", Severity.ERROR,
            "Une identité ne peut être à la fois douteuse (DOUT) et fictive (FICT)",
            "An identity cannot be both doubtful (DOUT) and fictitious (FICT)",
        ))
    forcing = [a for a in ("DOUT", "FICT") if a in attrs]
    if forcing and code in STATUSES and code != "PROV":
        problems.append(Problem(
            "INS-STA-02", Severity.ERROR,
            f"L'attribut {'/'.join(forcing)} impose le statut provisoire (PROV), pas {code}",
            f"Attribute {'/'.join(forcing)} requires the provisional status (PROV), not {code}",
        ))
    if ins_shared and code in STATUSES and code != "QUAL":
        problems.append(Problem(
            "INS-STA-04", Severity.ERROR,
            f"INS transmis pour une identité au statut {code} : seule une identité qualifiée (QUAL) partage son INS",
            f"INS sent for an identity with status {code}: only a qualified identity (QUAL) shares its INS",
        ))
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

    def missing(rule: str, fr: str, en: str) -> None:
        problems.append(Problem(rule, Severity.ERROR, f"Trait strict absent : {fr}", f"Strict trait missing: {en}"))

    if not (traits.birth_name or "").strip():
        missing("INS-TRA-01", "nom de naissance", "birth name")
    if not (traits.first_given_name or "").strip():
        missing("INS-TRA-02", "premier prénom de naissance", "first given name")
    names = [n.strip() for n in traits.given_names if n and n.strip()]
    if not names:
        missing("INS-TRA-03", "liste des prénoms de naissance", "list of given names")
    elif (traits.first_given_name or "").strip() and names[0].upper() != traits.first_given_name.strip().upper():
        problems.append(Problem(
            "INS-TRA-03", Severity.ERROR,
            f"La liste des prénoms ({' '.join(names)}) ne commence pas par le premier prénom ({traits.first_given_name})",
            f"The list of given names ({' '.join(names)}) does not start with the first given name ({traits.first_given_name})",
        ))
    sex = (traits.sex or "").strip().upper()
    if not sex:
        missing("INS-TRA-04", "sexe", "sex")
    elif sex not in SEXES:
        problems.append(Problem("INS-TRA-04", Severity.ERROR, f"Sexe {traits.sex!r} invalide (attendu : M, F ou I)",
                                 f"Invalid sex {traits.sex!r} (expected: M, F or I)"))
    if not (traits.birth_date or "").strip():
        missing("INS-TRA-05", "date de naissance", "birth date")
    elif parse_date(traits.birth_date) is None:
        problems.append(Problem("INS-TRA-05", Severity.ERROR, f"Date de naissance {traits.birth_date!r} invalide",
                                 f"Invalid birth date {traits.birth_date!r}"))
    place = (traits.birth_place or "").strip().upper()
    if not place:
        missing("INS-TRA-06", "lieu de naissance (code INSEE)", "birth place (INSEE code)")
    elif not _INSEE_PLACE.match(place):
        problems.append(Problem("INS-TRA-06", Severity.ERROR, f"Code INSEE du lieu de naissance {traits.birth_place!r} invalide (5 caractères)",
                                 f"Invalid INSEE birth place code {traits.birth_place!r} (5 characters)"))
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
        problems.append(Problem(
            "INS-COH-01", Severity.WARNING,
            f"Le matricule {text} désigne le sexe {written}, les traits indiquent {sex}",
            f"Matricule {text} says sex {written}, the traits say {sex}",
        ))
    born = parse_date(traits.birth_date)
    month = int(text[3:5])
    if born is not None and 1 <= month <= 12 and (born.year % 100, born.month) != (int(text[1:3]), month):
        problems.append(Problem(
            "INS-COH-02", Severity.WARNING,
            f"Le matricule {text} désigne une naissance en {text[3:5]}/{text[1:3]}, les traits indiquent {born.isoformat()}",
            f"Matricule {text} says born in {text[3:5]}/{text[1:3]}, the traits say {born.isoformat()}",
        ))
    return problems
