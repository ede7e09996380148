"""Patient identities in FHIR resources (FR Core Patient INS conventions).

* ``identifier``: ``system = urn:oid:<INS OID>``, ``value`` = the matricule (type INS-NIR /
  INS-NIA);
* the extension ``fr-core-identity-reliability`` and its ``identityStatus`` (valueCoding
  PROV, RECUP, VALI, QUAL);
* the ``official`` name: ``family`` (birth name), ``given[0]`` (first given name), the
  extension ``...birth-list-given-name`` (the list of given names, space separated);
* ``gender`` (male, female, other), ``birthDate``, the ``patient-birthPlace`` extension
  whose address carries the ``fr-core-address-insee-code`` coding.

Input is a Patient, a Bundle of them (a search result) or a list. Structure is validated by
``fhir.resources`` (FHIR R4B models, the same as R4 for Patient); identities are then read
from the JSON itself so that one bad element does not hide the others.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness import Message, Problem, Severity, UnsafeInput, catalogue, parse_json

from .identity import Traits

M = catalogue(__name__)

RELIABILITY = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability"
BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
INSEE_CODE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code"
BIRTH_LIST = "birth-list-given-name"  # fr-core-patient-birth-list-given-name (older: fr-core-birth-list-given-name)
_SEX = {"male": "M", "female": "F", "other": "I"}
MAX_PATIENTS = 1000


@dataclass
class FhirIdentifier:
    system: str
    value: str
    location: str


@dataclass
class FhirIdentity:
    location: str
    resource_id: str = ""
    identifiers: list[FhirIdentifier] = field(default_factory=list)
    traits: Traits = field(default_factory=Traits)
    status: str | None = None


@dataclass
class FhirRead:
    identities: list[FhirIdentity] = field(default_factory=list)
    problems: list[tuple[str, Problem]] = field(default_factory=list)


def _patients(data: Any, read: FhirRead) -> list[tuple[str, dict]]:
    if isinstance(data, list):
        items = [(f"[{n}]", r) for n, r in enumerate(data)]
    elif isinstance(data, dict) and data.get("resourceType") == "Bundle":
        entries = data.get("entry") if isinstance(data.get("entry"), list) else []
        items = [(f"Bundle.entry[{n}].resource", e.get("resource")) for n, e in enumerate(entries) if isinstance(e, dict)]
    else:
        items = [("", data)]
    out = []
    for where, r in items:
        if isinstance(r, dict) and r.get("resourceType") == "Patient":
            out.append((where + ("." if where else "") + "Patient", r))
        elif not isinstance(r, dict) or "resourceType" not in r:
            read.problems.append((where or "$", Problem("FHIR-RES-01", Severity.ERROR, message=M("fhir.no_resource_type"))))
    return out[:MAX_PATIENTS]


def _validate(where: str, resource: dict, read: FhirRead) -> None:
    """Structural validation by fhir.resources; each error is a finding (no input value shown)."""
    from fhir.resources.R4B.patient import Patient
    from pydantic import ValidationError

    try:
        Patient.model_validate(resource)
    except ValidationError as exc:
        for err in exc.errors()[:20]:
            path = ".".join(str(p) for p in err.get("loc", ()))
            read.problems.append((f"{where}.{path}" if path else where, Problem("FHIR-RES-02", Severity.ERROR, message=M("fhir.model", error=err.get("msg")))))
    except Exception as exc:  # the model library's own failures must not stop the reading
        read.problems.append((where, Problem("FHIR-RES-02", Severity.ERROR, message=M("fhir.validation_failed", error=type(exc).__name__))))


def _ext(node: Any, url_end: str) -> list[dict]:
    exts = node.get("extension") if isinstance(node, dict) else None
    return [e for e in exts if isinstance(e, dict) and str(e.get("url", "")).endswith(url_end)] if isinstance(exts, list) else []


def _str(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def read_patients(data: bytes) -> FhirRead:
    """Every Patient in a JSON document; problems instead of exceptions."""
    read = FhirRead()
    try:
        parsed = parse_json(data, source="$")
    except UnsafeInput as exc:
        why = exc.detail.param("error") if isinstance(exc.detail, Message) else None  # the parser's words, when it had some
        read.problems.append(("$", Problem("FHIR-JSON-01", Severity.ERROR, message=M("fhir.json", error=why or exc.detail))))
        return read
    for where, res in _patients(parsed, read):
        _validate(where, res, read)
        ident = FhirIdentity(where, _str(res.get("id")))
        ids = res.get("identifier") if isinstance(res.get("identifier"), list) else []
        for n, i in enumerate(ids):
            if isinstance(i, dict):
                ident.identifiers.append(FhirIdentifier(_str(i.get("system")), _str(i.get("value")), f"{where}.identifier[{n}]"))
        for rel in _ext(res, "fr-core-identity-reliability"):
            for sub in _ext(rel, "identityStatus"):
                coding = sub.get("valueCoding")
                if isinstance(coding, dict) and _str(coding.get("code")):
                    ident.status = _str(coding.get("code")).upper()
        names = res.get("name") if isinstance(res.get("name"), list) else []
        official = next((n for n in names if isinstance(n, dict) and n.get("use") == "official"), None)
        if official is not None:
            ident.traits.birth_name = _str(official.get("family")) or None
            given = official.get("given") if isinstance(official.get("given"), list) else []
            ident.traits.first_given_name = _str(given[0]) if given else None
            listed = [_str(e.get("valueString")) for e in _ext(official, BIRTH_LIST)]
            ident.traits.given_names = " ".join(listed).split()
        gender = _str(res.get("gender"))
        ident.traits.sex = _SEX.get(gender, gender) or None
        ident.traits.birth_date = _str(res.get("birthDate")) or None
        for place in _ext(res, "patient-birthPlace"):
            address = place.get("valueAddress")
            for code in _ext(address, "fr-core-address-insee-code"):
                coding = code.get("valueCoding")
                if isinstance(coding, dict) and _str(coding.get("code")):
                    ident.traits.birth_place = _str(coding.get("code"))
        read.identities.append(ident)
    return read


_TRAIT_PATH = {"INS-TRA-01": "name.family", "INS-TRA-02": "name.given", "INS-TRA-03": "name.extension(birth-list-given-name)",
               "INS-TRA-04": "gender", "INS-TRA-05": "birthDate", "INS-TRA-06": "extension(patient-birthPlace)"}


def check_identity(ident: FhirIdentity) -> list[tuple[str, Problem, FhirIdentifier | None]]:
    """Every INS rule for one Patient: (location, problem, the identifier concerned)."""
    from .identity import check_coherence, check_matricule, check_status, check_traits, classify_system

    out: list[tuple[str, Problem, FhirIdentifier | None]] = []
    ins = []
    for i in ident.identifiers:
        bare = classify_system(i.system)
        if bare.is_ins and not i.system.lower().startswith("urn:oid:"):
            out.append((f"{i.location}.system", Problem("INS-FHIR-01", Severity.ERROR, message=M("fhir.system", system=i.system, oid=bare.oid)), i))
        if not bare.is_ins:
            continue
        ins.append(i)
        out += [(f"{i.location}.value", p, i) for p in check_matricule(i.value)]
        out += [(f"{i.location}.value", p, i) for p in check_coherence(i.value, ident.traits)]
    where = f"{ident.location}.extension(fr-core-identity-reliability)"
    if ins and ident.status is None:
        out.append((where, Problem("INS-FHIR-02", Severity.ERROR, message=M("fhir.no_reliability")), None))
    elif ident.status is not None:
        out += [(where, p, None) for p in check_status(ident.status, (), ins_shared=bool(ins))]
    out += [(f"{ident.location}.{_TRAIT_PATH[p.rule]}", p, None) for p in check_traits(ident.traits)]
    return out
