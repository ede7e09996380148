"""What terminology questions and answers look like, whoever answers them.

A *coded value* is what a plugin found in an artefact (a CDA element, an XDM slot, an HL7
v2 field, a FHIR coding), with the value set its context requires. A *question* is what the
harness asks a terminology source about it; an *answer* is what came back, with where it
came from. Answers are plain JSON so that they can be recorded as evidence and replayed.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..messages import Localized

OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")

# Code systems CDA documents name by OID and FHIR servers by URI. Snapshots add their own
# pairs (a NOS ValueSet gives the OID of each system it includes).
WELL_KNOWN_SYSTEMS = {
    "2.16.840.1.113883.6.1": "http://loinc.org",
    "2.16.840.1.113883.6.96": "http://snomed.info/sct",
    "2.16.840.1.113883.6.8": "http://unitsofmeasure.org",
    "2.16.840.1.113883.6.3": "http://hl7.org/fhir/sid/icd-10",
    "2.16.840.1.113883.6.73": "http://www.whocc.no/atc",
    "2.16.840.1.113883.5.1": "http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender",
    "2.16.840.1.113883.5.25": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
    "2.16.840.1.113883.5.4": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
    "2.16.840.1.113883.5.88": "http://terminology.hl7.org/CodeSystem/v3-ParticipationFunction",
    "2.16.840.1.113883.5.111": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
}


_URI_TO_OID = {uri: oid for oid, uri in WELL_KNOWN_SYSTEMS.items()}

# The national terminology's canonical URLs of code systems also known by OID (NOS "TRE"
# resources: their url and identifier, as the ANS publishes them in ansforge/IG-fhir-mesures-de-sante,
# input/fsh/CodeSystems): a question naming either is about the same system.
NOS_SYSTEMS = {
    "https://mos.esante.gouv.fr/NOS/TRE_R310-CIM10/FHIR/TRE-R310-CIM10": "2.16.840.1.113883.6.3",
    "https://mos.esante.gouv.fr/NOS/TRE_R311-CIM10Atih/FHIR/TRE-R311-CIM10Atih": "1.2.250.1.213.2.67",
    "https://mos.esante.gouv.fr/NOS/TRE_R313-CISP2/FHIR/TRE-R313-CISP2": "2.16.840.1.113883.6.139",
}


def system_oid(system: str) -> str:
    """The OID a code system is known by, whether named ``urn:oid:X``, ``X``, by a NOS canonical
    URL or a well-known URI; the name itself when no OID is known for it."""
    oid = bare_oid(system)
    if oid:
        return oid
    return NOS_SYSTEMS.get(system) or _URI_TO_OID.get(system) or system


def bare_oid(ref: str) -> str | None:
    """``1.2.3`` for ``urn:oid:1.2.3`` or ``1.2.3``; None when ``ref`` is not an OID."""
    value = ref[8:] if ref.lower().startswith("urn:oid:") else ref
    return value if OID.match(value) else None


@dataclass(frozen=True)
class ValueSetRef:
    """A value set as a binding names it: canonical URL and/or OID, and a readable name."""

    url: str | None = None
    oid: str | None = None
    name: str | None = None
    version: str | None = None

    @property
    def ref(self) -> str:
        """The one string a question carries: the canonical URL (``|version`` when
        pinned), else ``urn:oid:<oid>``."""
        base = self.url or (f"urn:oid:{self.oid}" if self.oid else "")
        return f"{base}|{self.version}" if self.version and base else base

    @property
    def label(self) -> str:
        return self.name or self.url or self.oid or "?"


@dataclass(frozen=True)
class CodedValue:
    """One coded value found in a recorded artefact.

    ``value_set`` is the binding its context requires (None: no binding, only the code
    itself is checked against its code system). ``location`` points into the artefact
    (XPath, HL7 field, FHIRPath), ``context`` says in words what the element is.
    """

    artefact: str  # input name
    location: str
    code: str | None
    system: str | None
    display: str | None = None
    value_set: ValueSetRef | None = None
    context: "Localized | None" = None  # what the element is, in words
    null_flavor: str | None = None

    def validate_key(self) -> tuple[str, str, str, str] | None:
        if self.value_set is None or not self.code or not self.system:
            return None
        return ("validate-code", self.value_set.ref, self.system, self.code)

    def lookup_key(self) -> tuple[str, str, str] | None:
        if not self.code or not self.system:
            return None
        return ("lookup", self.system, self.code)


def question_key(answer: dict) -> tuple:
    q = answer["question"]
    if answer["op"] == "validate-code":
        return ("validate-code", q["value_set"], q["system"], q["code"])
    return ("lookup", q["system"], q["code"])


@dataclass
class Answer:
    """One answer. ``result`` is True/False when a source could say, None when none could
    (then ``error`` says why). ``source`` says who answered: a remote server (base URL,
    software and version) or a snapshot (name and SHA-256)."""

    op: str
    question: dict[str, str]
    result: bool | None
    display: str | None = None
    inactive: bool | None = None
    message: str | None = None
    source: dict[str, Any] = field(default_factory=dict)
    fallback: dict[str, str] | None = None  # why the snapshot answered instead of the server
    cache: dict[str, str] | None = None  # {"from": "memory"|"disk", "stored": ...}
    error: dict[str, str] | None = None  # {"kind", "fr", "en"} when result is None
    asked: dict[str, str] | None = None  # the question as sent, when the server knows it by other names
    matches: list[dict[str, str]] | None = None  # $translate: every target, {"system", "code", "relationship"}

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k == "result"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Answer":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Expansion:
    value_set: str
    concepts: list[dict[str, str]]  # {"system", "code", "display"}
    total: int
    source: dict[str, Any]
    complete: bool = True


class TerminologyService(Protocol):
    """What every plugin uses to ask about codes, whoever answers (server, snapshot, cache)."""

    def validate_code(self, value_set: str, system: str, code: str) -> Answer: ...

    def lookup(self, system: str, code: str) -> Answer: ...

    def expand(self, value_set: str) -> Expansion: ...

    def translate(self, concept_map: str, system: str, code: str) -> Answer: ...

    def describe(self) -> dict[str, Any]: ...


def ask(service: TerminologyService, op: str, question: dict[str, str]) -> Answer:
    if op == "validate-code":
        return service.validate_code(question["value_set"], question["system"], question["code"])
    if op == "translate":
        return service.translate(question["concept_map"], question["system"], question["code"])
    return service.lookup(question["system"], question["code"])


def error_record(kind: str, message: "Localized") -> dict[str, str]:
    """Why no answer, as an answer records it: ``{"kind", "fr", "en"}``."""
    return {"kind": kind, **message.texts()}
