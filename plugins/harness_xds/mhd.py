"""Document sharing metadata in FHIR: an ITI-65 Provide Document Bundle read into the XDS
metadata model, and stored XDS entries written back as FHIR resources (ITI-66, ITI-67).

A domain library (pure functions of JSON data and ebRIM elements; no pytest, no pluggy) for
the PDSm stand-in and its checks. Sources:

- IHE MHD 4.2 (ITI TF-2 3.65 "Provide Document Bundle", 3.66, 3.67; ITI TF-3 4.5 "FHIR
  Representation of Document Sharing Metadata", the DocumentEntry and SubmissionSet mappings
  of its StructureDefinitions: ``masterIdentifier -> uniqueId``, ``identifier ->
  entryUUID``, ``category -> classCode``, ``securityLabel -> confidentialityCode``, ...; the
  hash in base64 in FHIR, in hexadecimal in XDS);
- the ANS guide "Partage de Documents de Santé en mobilité" (PDSm 3.1.1, ans.fhir.fr.pdsm,
  github.com/ansforge/IG-fhir-partage-de-documents-de-sante): the profiles
  PDSm_ComprehensiveProvideDocumentBundle, PDSm_ComprehensiveDocumentReference and
  PDSm_SubmissionSetComprehensive, their cardinalities and invariants (each rule below
  names its element), and the OIDs of the French code systems their invariants give.

One mapping: the XDS metadata rules (:mod:`.rules`) and the XDS↔CDA agreement
(:mod:`.agreement`) judge a FHIR publication exactly as they judge an ITI-41 one, and every
value keeps the FHIR path it was read from (``Bundle.entry[1].resource.type``) for the
findings. Folders (List ``folder``) are not mapped in this version: MHD lets a recipient
ignore them with the warning ``PartialFolderContentNotProcessed`` (ITI TF-2 3.65.4.1.3),
which is what the stand-in answers.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from lxml import etree

from harness import Problem, Severity, catalogue
from harness.terminology import bare_oid

from . import ebrim
from .rules import parse_cx

M = catalogue(__name__)

URI = "urn:ietf:rfc:3986"
LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
EXT = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/"
SOURCE_ID, DESIGNATION_TYPE, AUTHOR_ORG = EXT + "ihe-sourceId", EXT + "ihe-designationType", EXT + "ihe-authorOrg"
INS_OIDS = ("1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11")
# relatesTo.code -> association type (MHD's ConceptMap AssociationTypeVsRelatesTo)
RELATES_TO = {"replaces": ebrim.RPLC, "transforms": "urn:ihe:iti:2007:AssociationType:XFRM",
              "appends": "urn:ihe:iti:2007:AssociationType:APND", "signs": "urn:ihe:iti:2007:AssociationType:signs"}

# Code systems a FHIR resource names by URI and XDS metadata by OID. HL7's (FHIR terminology);
# the ANS terminologies (TRE) by their NOS name, whatever the URI's suffix: the OIDs are those
# the PDSm invariants give (constr-bind-type, -category, -format, -ProducteurDoc,
# designationtype), and, for A01, A07 and A08, the same value sets of the NOS in FHIR and in SVS
# (JDV_J04, JDV_J08) side by side. A URI not in this table keeps its URI in the metadata (and
# the mapping says so: MHD-MAP-01).
HL7_SYSTEMS = {
    "http://loinc.org": "2.16.840.1.113883.6.1",
    "http://snomed.info/sct": "2.16.840.1.113883.6.96",
    "http://hl7.org/fhir/sid/icd-10": "2.16.840.1.113883.6.3",
    "http://terminology.hl7.org/CodeSystem/v3-Confidentiality": "2.16.840.1.113883.5.25",
}
TRE_OIDS = {
    "TRE_A00": "1.2.250.1.213.1.1.4.6",  # ProducteurDocNonPS
    "TRE_A01": "1.2.250.1.213.1.1.4.9",  # CadreExercice
    "TRE_A03": "1.2.250.1.213.1.1.4.1",  # ClasseDocument
    "TRE_A05": "1.2.250.1.213.1.1.4.12",  # TypeDocComplementaireCISIS
    "TRE_A06": "1.2.250.1.213.1.1.4.2.282",  # FormatCodeComplementaire
    "TRE_A07": "1.2.250.1.213.1.1.4.13",  # StatutVisibiliteDocument
    "TRE_A08": "2.16.840.1.113883.5.25",  # HL7Confidentiality
    "TRE_A09": "1.2.840.10008.2.6.1",  # DICOMuidRegistry
    "TRE_A11": "1.3.6.1.4.1.19376.1.2.3",  # IheFormatCode
    "TRE_R02": "1.2.250.1.71.4.2.4",  # SecteurActivite
    "TRE_R209": "1.2.250.1.213.2.2",  # TypeActivite
}
TRE_NAMES = {
    "TRE_A00": "ProducteurDocNonPS", "TRE_A01": "CadreExercice", "TRE_A03": "ClasseDocument", "TRE_A05": "TypeDocComplementaireCISIS",
    "TRE_A06": "FormatCodeComplementaire", "TRE_A07": "StatutVisibiliteDocument", "TRE_A09": "DICOMuidRegistry", "TRE_A11": "IheFormatCode",
    "TRE_R02": "SecteurActivite", "TRE_R209": "TypeActivite",
}
_NOS = re.compile(r"^https://mos\.esante\.gouv\.fr/NOS/(TRE_[A-Z]\d+)[-_]")


def system_oid(system: str) -> str | None:
    """The OID XDS metadata names the FHIR code system ``system`` by, when known."""
    oid = bare_oid(system or "")
    if oid is not None:
        return oid
    if system in HL7_SYSTEMS:
        return HL7_SYSTEMS[system]
    m = _NOS.match(system or "")
    return TRE_OIDS.get(m.group(1)) if m else None


def oid_system(oid: str) -> str:
    """The URI a FHIR resource names the code system ``oid`` by (``urn:oid:`` when none is known)."""
    for uri, known in HL7_SYSTEMS.items():
        if known == oid:
            return uri
    for tre, known in TRE_OIDS.items():
        if known == oid and tre in TRE_NAMES:
            name = f"{tre}-{TRE_NAMES[tre]}"
            return f"https://mos.esante.gouv.fr/NOS/{name}/FHIR/{name.replace('_', '-')}"
    return oid if ":" in oid else f"urn:oid:{oid}"


# -- date and time ---------------------------------------------------------------------------

def dtm(value: str) -> str | None:
    """A FHIR date or dateTime as an XDS DTM (UTC; the precision given); None when it is not
    one (FHIR R4 dateTime: a time has its seconds and a time zone)."""
    value = (value or "").strip()
    m = re.fullmatch(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2}))?)?)?", value)
    if not m:
        return None
    year, month, day, hour, minute, second, zone = m.groups()
    if hour is None:
        return "".join(p for p in (year, month, day) if p)
    try:
        when = datetime.fromisoformat(f"{year}-{month}-{day}T{hour}:{minute}:{second}{'+00:00' if zone == 'Z' else zone}")
    except ValueError:
        return None
    return when.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S")


def fhir_datetime(value: str) -> str | None:
    """An XDS DTM (UTC) as a FHIR date or dateTime."""
    value = (value or "").strip()
    if not value.isdigit() or len(value) not in (4, 6, 8, 10, 12, 14):
        return None
    if len(value) <= 8:
        return "-".join(p for p in (value[:4], value[4:6], value[6:8]) if p)
    digits = value.ljust(14, "0")
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:8]}T{digits[8:10]}:{digits[10:12]}:{digits[12:14]}Z"


# -- the bundle as read ----------------------------------------------------------------------

@dataclass
class Item:
    """One entry of the bundle: its resource, where it is, how it is to be created."""

    index: int
    full_url: str
    resource: dict
    method: str
    url: str

    @property
    def path(self) -> str:
        return f"Bundle.entry[{self.index}].resource"

    @property
    def type(self) -> str:
        return str(self.resource.get("resourceType") or "")


@dataclass
class Provided:
    """What an ITI-65 bundle holds, and what breaks the profile's rules."""

    items: list[Item]
    submission_set: Item | None = None
    documents: list[Item] = field(default_factory=list)
    binaries: list[Item] = field(default_factory=list)
    folders: list[Item] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    decoded: dict[int, bytes | None] = field(default_factory=dict)  # a Binary's bytes by entry index, decoded once

    def resolve(self, reference: str, container: dict | None = None) -> tuple[dict, str] | None:
        """The resource ``reference`` names, and its path: ``#id`` in ``container``'s contained
        resources, a fullUrl of the bundle, or ``Type/id`` of a resource of the bundle."""
        if not isinstance(reference, str) or not reference:
            return None
        if reference.startswith("#") and container is not None:
            for n, r in enumerate(container.get("contained") or []):
                if isinstance(r, dict) and r.get("id") == reference[1:]:
                    return r, f"contained[{n}]"
            return None
        for item in self.items:
            if item.full_url == reference or (item.type and item.resource.get("id") and reference.endswith(f"{item.type}/{item.resource['id']}")):
                return item.resource, item.path
        return None


def _format(dr: dict) -> dict | None:
    """``content[0].format``: a Coding (not a CodeableConcept) in FHIR R4."""
    content = dr.get("content") if isinstance(dr.get("content"), list) else []
    fmt = content[0].get("format") if content and isinstance(content[0], dict) else None
    return fmt if isinstance(fmt, dict) else None


def _codes(cc: Any) -> list[dict]:
    return [c for c in (cc.get("coding") or []) if isinstance(c, dict)] if isinstance(cc, dict) else []


def _is_list_of(resource: dict, code: str) -> bool:
    return resource.get("resourceType") == "List" and any(
        c.get("code") == code and c.get("system") in (LIST_TYPES, None) for c in _codes(resource.get("code")))


def _fail(problems: list[Problem], rule: str, where: str, message, severity: Severity = Severity.ERROR) -> None:
    problems.append(Problem(rule, severity, where, message))


def read_provide(bundle: Any) -> Provided:
    """An ITI-65 request's bundle (parsed JSON) as items, with the rules of MHD's
    ProvideBundle and PDSm's profiles it breaks (each :class:`Problem` names its rule and the
    bundle's path). Structural only: the metadata's own rules are :mod:`.rules`'."""
    provided = Provided(items=[])
    p = provided.problems
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        _fail(p, "MHD-65-01", "Bundle", M("mhd.not_bundle", kind=str(bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__)))
        return provided
    if bundle.get("type") != "transaction":
        _fail(p, "MHD-65-01", "Bundle.type", M("mhd.not_transaction", kind=str(bundle.get("type"))))
    entries = bundle.get("entry") if isinstance(bundle.get("entry"), list) else []
    seen: dict[str, int] = {}
    for n, entry in enumerate(entries):
        where = f"Bundle.entry[{n}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            _fail(p, "MHD-65-02", where, M("mhd.no_resource"))
            continue
        request = entry.get("request") if isinstance(entry.get("request"), dict) else {}
        item = Item(n, str(entry.get("fullUrl") or ""), entry["resource"], str(request.get("method") or ""), str(request.get("url") or ""))
        provided.items.append(item)
        if item.method not in ("POST", "PUT"):
            _fail(p, "MHD-65-02", f"{where}.request.method", M("mhd.method", method=item.method or "-"))
        if not item.full_url:
            _fail(p, "MHD-65-02", f"{where}.fullUrl", M("mhd.no_full_url"))
        elif item.full_url in seen:
            _fail(p, "MHD-65-02", f"{where}.fullUrl", M("mhd.full_url_twice", url=item.full_url, other=seen[item.full_url]))
        else:
            seen[item.full_url] = n
        if item.type == "DocumentReference":
            provided.documents.append(item)
        elif item.type == "Binary":
            provided.binaries.append(item)
        elif _is_list_of(item.resource, "submissionset"):
            if provided.submission_set is None:
                provided.submission_set = item
            else:
                _fail(p, "MHD-65-03", item.path, M("mhd.submission_sets"))
        elif _is_list_of(item.resource, "folder"):
            provided.folders.append(item)
    if provided.submission_set is None:
        _fail(p, "MHD-65-03", "Bundle.entry", M("mhd.no_submission_set"))
    if not provided.documents:
        _fail(p, "MHD-65-04", "Bundle.entry", M("mhd.no_document"))
    for dr in provided.documents:
        _document_rules(provided, dr)
    if provided.submission_set is not None:
        _submission_set_rules(provided, provided.submission_set)
    return provided


def binary(provided: Provided, dr: Item) -> tuple[Item | None, bytes | None]:
    """The Binary a DocumentReference's attachment points at, and its bytes (decoded once:
    the rules, the mapping and the stand-in's record all ask)."""
    url = attachment(dr.resource).get("url")
    for b in provided.binaries:
        if url and (b.full_url == url or (b.resource.get("id") and str(url).endswith(f"Binary/{b.resource['id']}"))):
            if b.index not in provided.decoded:
                try:
                    provided.decoded[b.index] = base64.b64decode(str(b.resource.get("data") or ""), validate=True)
                except (binascii.Error, ValueError):
                    provided.decoded[b.index] = None
            return b, provided.decoded[b.index]
    return None, None


def attachment(dr: dict) -> dict:
    content = dr.get("content") if isinstance(dr.get("content"), list) else []
    first = content[0] if content and isinstance(content[0], dict) else {}
    return first.get("attachment") if isinstance(first.get("attachment"), dict) else {}


def document_reference_problems(r: dict, at: str = "DocumentReference") -> list[Problem]:
    """The PDSm_ComprehensiveDocumentReference rules one DocumentReference breaks on its own
    (cardinalities the profile raises to 1..), wherever it stands (``at``: its path)."""
    p: list[Problem] = []
    for element, rule in (("custodian", "PDSM-DR-01"), ("date", "PDSM-DR-02"), ("author", "PDSM-DR-03"), ("contained", "PDSM-DR-04"),
                          ("masterIdentifier", "PDSM-DR-05")):
        if not r.get(element):
            _fail(p, rule, f"{at}.{element}", M("mhd.missing", element=f"DocumentReference.{element}", profile="PDSm_ComprehensiveDocumentReference"))
    att = attachment(r)
    for element in ("size", "hash", "title"):
        if att.get(element) in (None, ""):
            _fail(p, "PDSM-DR-06", f"{at}.content[0].attachment.{element}",
                  M("mhd.missing", element=f"DocumentReference.content.attachment.{element}", profile="PDSm_ComprehensiveDocumentReference"))
    if not ((r.get("context") or {}).get("period") or {}).get("start"):
        _fail(p, "PDSM-DR-07", f"{at}.context.period.start",
              M("mhd.missing", element="DocumentReference.context.period.start", profile="PDSm_ComprehensiveDocumentReference"))
    return p


def _document_rules(provided: Provided, dr: Item) -> None:
    p, r, at = provided.problems, dr.resource, dr.path
    p += document_reference_problems(r, at)
    att = attachment(r)
    held, data = binary(provided, dr)
    if held is None:  # constr-bind-attachmenturl: for a new document, Binary/[id] of the bundle
        _fail(p, "MHD-65-05", f"{at}.content[0].attachment.url", M("mhd.url_not_binary", url=str(att.get("url") or "-")))
        return
    if data is None:
        _fail(p, "MHD-65-05", f"{held.path}.data", M("mhd.binary_unreadable"))
        return
    digest = base64.b64encode(hashlib.sha1(data).digest()).decode()
    if att.get("hash") and att.get("hash") != digest:
        _fail(p, "MHD-65-06", f"{at}.content[0].attachment.hash", M("mhd.hash", said=str(att.get("hash")), actual=digest))
    if att.get("size") not in (None, "") and str(att.get("size")) != str(len(data)):
        _fail(p, "MHD-65-06", f"{at}.content[0].attachment.size", M("mhd.size", said=str(att.get("size")), actual=len(data)))
    if held.resource.get("contentType") and att.get("contentType") and held.resource.get("contentType") != att.get("contentType"):
        _fail(p, "MHD-65-06", f"{held.path}.contentType", M("mhd.content_type", said=str(att.get("contentType")), actual=str(held.resource.get("contentType"))))


def submission_set_problems(r: dict, at: str = "List") -> list[Problem]:
    """The PDSm_SubmissionSetComprehensive rules one submission set List breaks on its own."""
    p: list[Problem] = []
    for element, rule in (("contained", "PDSM-SS-01"), ("source", "PDSM-SS-03")):
        if not r.get(element):
            _fail(p, rule, f"{at}.{element}", M("mhd.missing", element=f"List.{element}", profile="PDSm_SubmissionSetComprehensive"))
    urls = {e.get("url") for e in (r.get("extension") or []) if isinstance(e, dict)}
    for url, name in ((DESIGNATION_TYPE, "designationType"), (SOURCE_ID, "sourceId")):
        if url not in urls:
            _fail(p, "PDSM-SS-02", f"{at}.extension", M("mhd.missing", element=f"List.extension[{name}]", profile="PDSm_SubmissionSetComprehensive"))
    return p


def _submission_set_rules(provided: Provided, ss: Item) -> None:
    p, r, at = provided.problems, ss.resource, ss.path
    p += submission_set_problems(r, at)
    items = [e.get("item", {}).get("reference") for e in (r.get("entry") or []) if isinstance(e, dict) and isinstance(e.get("item"), dict)]
    for dr in provided.documents:
        if dr.full_url not in items and not any(i and dr.resource.get("id") and i.endswith(f"DocumentReference/{dr.resource['id']}") for i in items):
            _fail(p, "MHD-65-07", f"{at}.entry", M("mhd.not_listed", path=dr.path))
    for n, ref in enumerate(items):
        if provided.resolve(ref) is None:
            _fail(p, "MHD-65-07", f"{at}.entry[{n}].item", M("mhd.unresolved", reference=str(ref)))


# -- FHIR -> XDS -----------------------------------------------------------------------------

@dataclass
class Mapped:
    """A bundle in the XDS model: the submission as the rules read it (FHIR paths), the
    ``SubmitObjectsRequest`` a registry stores, the documents by entry id."""

    submission: ebrim.Submission
    request: etree._Element
    documents: dict[str, bytes]
    ids: dict[str, str]  # fullUrl -> entry id
    problems: list[Problem] = field(default_factory=list)


def _identifier_cx(identifier: Any) -> tuple[str, str] | None:
    if not isinstance(identifier, dict):
        return None
    oid = bare_oid(str(identifier.get("system") or ""))
    value = str(identifier.get("value") or "")
    return (value, oid) if oid and value else None


def _person_cx(resource: dict) -> tuple[str, str] | None:
    """A patient's identifier as (id, OID): an INS first."""
    found = [cx for cx in map(_identifier_cx, resource.get("identifier") or []) if cx]
    return next((cx for cx in found if cx[1] in INS_OIDS), found[0] if found else None)


class _Mapper:
    def __init__(self, provided: Provided) -> None:
        self.provided = provided
        self.problems: list[Problem] = []

    def coded(self, cc: Any, where: str) -> tuple[str, str, str] | None:
        codes = _codes(cc)
        if not codes:
            return None
        c = codes[0]
        system = str(c.get("system") or "")
        oid = system_oid(system)
        if oid is None:
            _fail(self.problems, "MHD-MAP-01", f"{where}.coding[0].system", M("mhd.system_unknown", system=system or "-"), Severity.WARNING)
        return str(c.get("code") or ""), oid or system, str(c.get("display") or "")

    def patient(self, reference: Any, container: dict, where: str) -> str:
        """A Reference(Patient) as the CX of XDS (``ID^^^&OID&ISO``, ``^NH`` for an INS)."""
        cx = None
        if isinstance(reference, dict):
            cx = _identifier_cx(reference.get("identifier"))
            if cx is None:
                found = self.provided.resolve(str(reference.get("reference") or ""), container)
                if found is not None and found[0].get("resourceType") == "Patient":
                    cx = _person_cx(found[0])
        if cx is None:
            _fail(self.problems, "MHD-MAP-02", where, M("mhd.patient"))
            return ""
        return f"{cx[0]}^^^&{cx[1]}&ISO" + ("^NH" if cx[1] in INS_OIDS else "")

    def person(self, reference: Any, container: dict) -> dict[str, list[str]]:
        """An author (or the legal authenticator) as the slots of an XDS author."""
        found = self.provided.resolve(str((reference or {}).get("reference") or ""), container) if isinstance(reference, dict) else None
        if found is None:
            return {}
        resource, out = found[0], {}
        kind = resource.get("resourceType")
        practitioner, organization = (resource, None) if kind == "Practitioner" else (None, resource) if kind == "Organization" else (None, None)
        if kind == "PractitionerRole":
            practitioner = (self.provided.resolve(str((resource.get("practitioner") or {}).get("reference") or ""), container) or (None,))[0]
            organization = (self.provided.resolve(str((resource.get("organization") or {}).get("reference") or ""), container) or (None,))[0]
            specialties = [c for cc in (resource.get("specialty") or []) for c in _codes(cc)[:1]]
            if specialties:
                out["authorSpecialty"] = [f"{c.get('code', '')}^{c.get('display', '')}^&{system_oid(str(c.get('system') or '')) or c.get('system', '')}&ISO"
                                          for c in specialties]
            roles = [c for cc in (resource.get("code") or []) for c in _codes(cc)[:1]]
            if roles:
                out["authorRole"] = [f"{c.get('code', '')}^^^&{system_oid(str(c.get('system') or '')) or c.get('system', '')}&ISO" for c in roles]
        if practitioner:
            cx = _person_cx(practitioner) or ("", "")
            name = (practitioner.get("name") or [{}])[0] if isinstance(practitioner.get("name"), list) else {}
            family, given = str(name.get("family") or ""), " ".join(str(g) for g in (name.get("given") or []))
            out["authorPerson"] = [f"{cx[0]}^{family}^{given}^^^^^^&{cx[1]}&ISO^D^^^IDNPS" if cx[0] else f"^{family}^{given}"]
        if organization:
            cx = _person_cx(organization)
            name = str(organization.get("name") or "")
            out["authorInstitution"] = [f"{name}^^^^^&{cx[1]}&ISO^IDNST^^^{cx[0]}" if cx else name]
        return out

    def document(self, dr: Item) -> tuple[ebrim.NewObject, dict[str, str], list[tuple[str, str]]]:
        r, at = dr.resource, dr.path
        places: dict[str, str] = {}
        entry_id = next((str(i.get("value")) for i in (r.get("identifier") or []) if isinstance(i, dict)
                         and i.get("system") == URI and str(i.get("value") or "").startswith("urn:uuid:")), "")
        entry_id = entry_id or (dr.full_url if dr.full_url.startswith("urn:uuid:") else f"urn:uuid:{uuid.uuid4()}")
        att = attachment(r)
        context = r.get("context") if isinstance(r.get("context"), dict) else {}
        slots: dict[str, list[str]] = {}

        def slot(name: str, value: Any, where: str) -> None:
            if value not in (None, ""):
                slots[name] = [str(value)]
                places[name] = where

        for name, value, where in (("creationTime", att.get("creation"), "content[0].attachment.creation"),
                                   ("serviceStartTime", (context.get("period") or {}).get("start"), "context.period.start"),
                                   ("serviceStopTime", (context.get("period") or {}).get("end"), "context.period.end")):
            if value:
                slot(name, dtm(str(value)) or str(value), f"{at}.{where}")
        slot("languageCode", att.get("language"), f"{at}.content[0].attachment.language")
        slot("size", att.get("size"), f"{at}.content[0].attachment.size")
        if att.get("hash"):
            try:
                slot("hash", base64.b64decode(str(att["hash"]), validate=True).hex(), f"{at}.content[0].attachment.hash")
            except (binascii.Error, ValueError):
                slot("hash", att["hash"], f"{at}.content[0].attachment.hash")
        if context.get("sourcePatientInfo"):
            source = self.patient(context["sourcePatientInfo"], r, f"{at}.context.sourcePatientInfo")
            slot("sourcePatientId", source.removesuffix("^NH") + "^PI" if source else "", f"{at}.context.sourcePatientInfo")
        legal = self.person(r.get("authenticator"), r).get("authorPerson")
        if legal:
            slot("legalAuthenticator", legal[0], f"{at}.authenticator")
        coded: dict[str, list[tuple[str, str, str]]] = {}
        code_places: dict[str, list[str]] = {}
        for name, values, where in (("classCode", (r.get("category") or [])[:1], "category"), ("typeCode", [r.get("type")], "type"),
                                    ("formatCode", [{"coding": [_format(r)]}] if _format(r) else [], "content[0].format"),
                                    ("healthcareFacilityTypeCode", [context.get("facilityType")], "context.facilityType"),
                                    ("practiceSettingCode", [context.get("practiceSetting")], "context.practiceSetting"),
                                    ("confidentialityCode", r.get("securityLabel") or [], "securityLabel"),
                                    ("eventCodeList", context.get("event") or [], "context.event")):
            for n, cc in enumerate(values if isinstance(values, list) else []):
                place = f"{at}.{where}" if name not in ("confidentialityCode", "eventCodeList", "classCode") else f"{at}.{where}[{n}]"
                value = self.coded(cc, place)
                if value is not None:
                    coded.setdefault(name, []).append(value)
                    code_places.setdefault(name, []).append(place)
        authors = [a for a in (self.person(ref, r) for ref in (r.get("author") or [])) if a]
        identifiers = {"patientId": self.patient(r.get("subject"), r, f"{at}.subject")}
        places["patientId"] = f"{at}.subject"
        master = r.get("masterIdentifier") if isinstance(r.get("masterIdentifier"), dict) else {}
        if master.get("value"):
            identifiers["uniqueId"] = unique_id(master)
        places.update(title=f"{at}.content[0].attachment.title", mimeType=f"{at}.content[0].attachment.contentType",
                      **{f"coded:{k}:{i}": v for k, vs in code_places.items() for i, v in enumerate(vs)},
                      **{f"author:{i}": f"{at}.author[{i}]" for i in range(len(authors))})
        attributes = {"objectType": ebrim.DOCUMENT_ENTRY_TYPE, "mimeType": str(att.get("contentType") or "")}
        relations = []
        for n, rel in enumerate(r.get("relatesTo") or []):
            kind = RELATES_TO.get(str((rel or {}).get("code") or ""))
            target = str(((rel or {}).get("target") or {}).get("reference") or "")
            if kind and target:
                relations.append((kind, "urn:uuid:" + target.rsplit("/", 1)[-1] if "/" in target else target))
            else:
                _fail(self.problems, "MHD-MAP-03", f"{at}.relatesTo[{n}]", M("mhd.relates_to", code=str((rel or {}).get("code") or "-")))
        obj = ebrim.NewObject(entry_id, slots, coded, {k: v for k, v in identifiers.items() if v}, authors, str(att.get("title") or ""), attributes)
        return obj, places, relations

    def submission_set(self, ss: Item) -> tuple[ebrim.NewObject, dict[str, str]]:
        r, at = ss.resource, ss.path
        places: dict[str, str] = {}
        ids = [i for i in (r.get("identifier") or []) if isinstance(i, dict)]
        entry_uuid = next((str(i.get("value")) for i in ids if str(i.get("value") or "").startswith("urn:uuid:") and i.get("use") != "usual"), "")
        entry_uuid = entry_uuid or (ss.full_url if ss.full_url.startswith("urn:uuid:") else f"urn:uuid:{uuid.uuid4()}")
        identifiers = {"patientId": self.patient(r.get("subject"), r, f"{at}.subject")}
        places["patientId"] = f"{at}.subject"
        usual = next((i for i in ids if i.get("use") == "usual"), None)
        if usual is not None:
            identifiers["uniqueId"] = unique_id(usual)
        slots: dict[str, list[str]] = {}
        coded: dict[str, list[tuple[str, str, str]]] = {}
        for n, ext in enumerate(e for e in (r.get("extension") or []) if isinstance(e, dict)):
            if ext.get("url") == SOURCE_ID and isinstance(ext.get("valueIdentifier"), dict):
                identifiers["sourceId"] = unique_id(ext["valueIdentifier"])
            elif ext.get("url") == DESIGNATION_TYPE:
                value = self.coded(ext.get("valueCodeableConcept"), f"{at}.extension[{n}].valueCodeableConcept")
                if value is not None:
                    coded["contentTypeCode"] = [value]
                    places["coded:contentTypeCode:0"] = f"{at}.extension[{n}].valueCodeableConcept"
        if r.get("date"):
            slots["submissionTime"] = [dtm(str(r["date"])) or str(r["date"])]
            places["submissionTime"] = f"{at}.date"
        authors = []
        source = self.person(r.get("source"), r)
        for ext in ((r.get("source") or {}).get("extension") or []) if isinstance(r.get("source"), dict) else []:
            if isinstance(ext, dict) and ext.get("url") == AUTHOR_ORG:
                source.update({k: v for k, v in self.person(ext.get("valueReference"), r).items() if k == "authorInstitution"})
        if source:
            authors.append(source)
            places["author:0"] = f"{at}.source"
        places["title"] = f"{at}.title"
        obj = ebrim.NewObject(entry_uuid, slots, coded, {k: v for k, v in identifiers.items() if v}, authors, str(r.get("title") or ""))
        return obj, places


def unique_id(identifier: dict) -> str:
    """An Identifier as an XDS uniqueId: ``urn:oid:X`` (system ``urn:ietf:rfc:3986``) is X;
    a value under an OID system is ``OID^value`` (a CDA id root and extension)."""
    value, system = str(identifier.get("value") or ""), str(identifier.get("system") or "")
    if value.startswith("urn:oid:"):
        return value[8:]
    oid = bare_oid(system)
    return f"{oid}^{value}" if oid and system != URI else value


def to_xds(provided: Provided) -> Mapped:
    """The bundle's submission set and documents as XDS metadata (MHD's mapping)."""
    mapper = _Mapper(provided)
    docs, places, relations, ids, data = [], {}, [], {}, {}
    for dr in provided.documents:
        obj, where, related = mapper.document(dr)
        docs.append(obj)
        places[obj.id] = (dr.path, where)
        relations += [(kind, obj.id, target, {}) for kind, target in related]
        ids[dr.full_url] = obj.id
        bytes_ = binary(provided, dr)[1]
        if bytes_ is not None:
            data[obj.id] = bytes_
    if provided.submission_set is not None:
        ss, where = mapper.submission_set(provided.submission_set)
        places[ss.id] = (provided.submission_set.path, where)
        ids[provided.submission_set.full_url] = ss.id
    else:
        ss = ebrim.NewObject(f"urn:uuid:{uuid.uuid4()}")
    request = ebrim.write_submission(ss, docs, relations)
    submission = ebrim.read_submission(request)
    for obj in submission.documents + submission.submission_sets:
        if obj.id in places:
            _relabel(obj, *places[obj.id])
    return Mapped(submission, request, data, ids, mapper.problems)


def _relabel(obj: ebrim.RegistryObject, path: str, places: dict[str, str]) -> None:
    """The object as read from ebRIM, its places those of the FHIR resource it came from."""
    obj.location = path
    obj.places = {k: v for k, v in places.items() if ":" not in k}
    for name, codes in obj.classifications.items():
        obj.classifications[name] = [dataclasses.replace(c, location=places.get(f"coded:{name}:{i}", path)) for i, c in enumerate(codes)]
    for i, author in enumerate(obj.authors):
        author.location = places.get(f"author:{i}", path)


# -- XDS -> FHIR -----------------------------------------------------------------------------

STATUS = {ebrim.APPROVED: "current", ebrim.DEPRECATED: "superseded"}


def _coding(c: ebrim.Coded) -> dict:
    out = {"system": oid_system(c.scheme), "code": c.code}
    if c.display:
        out["display"] = c.display
    return {"coding": [out]}


def _patient_reference(cx: str) -> dict | None:
    parsed = parse_cx(cx)
    return {"identifier": {"system": f"urn:oid:{parsed[1]}", "value": parsed[0]}} if parsed else None


def _coded_value(value: str) -> tuple[str, str, str]:
    """``code^display^&OID&ISO`` or ``code^display^OID`` (CE/CWE of XDS) as (code, OID, display)."""
    parts = value.split("^")
    system = parts[2] if len(parts) > 2 else ""
    if system.startswith("&"):
        system = system.split("&")[1] if system.count("&") >= 2 else system.strip("&")
    return parts[0], system, parts[1] if len(parts) > 1 else ""


def _contained_author(author: ebrim.Author, n: int) -> tuple[list[dict], str]:
    """An XDS author as contained resources (a Practitioner, with a PractitionerRole and an
    Organization when the author says more than the person), and the one to reference."""
    out: list[dict] = []
    parts = (author.person or "").split("^")
    practitioner: dict | None = None
    if author.person:
        practitioner = {"resourceType": "Practitioner", "id": f"author{n}-person"}
        cx = parse_cx(f"{parts[0]}^^^{parts[8]}") if len(parts) > 8 and parts[0] else None
        if cx:
            practitioner["identifier"] = [{"system": f"urn:oid:{cx[1]}", "value": cx[0]}]
        name: dict = {"family": parts[1]} if len(parts) > 1 and parts[1] else {}
        if len(parts) > 2 and parts[2]:
            name["given"] = parts[2].split(" ")
        if name:
            practitioner["name"] = [name]
        out.append(practitioner)
    organization: dict | None = None
    if author.institutions:
        xon = author.institutions[0].split("^")
        organization = {"resourceType": "Organization", "id": f"author{n}-org", "name": xon[0]}
        oid = xon[5].split("&")[1] if len(xon) > 5 and xon[5].count("&") >= 2 else ""
        if oid and len(xon) > 9 and xon[9]:
            organization["identifier"] = [{"system": f"urn:oid:{oid}", "value": xon[9]}]
        out.append(organization)
    if not (author.specialties or author.roles or (practitioner and organization)):
        return out, (practitioner or organization or {"id": ""})["id"]
    role: dict = {"resourceType": "PractitionerRole", "id": f"author{n}"}
    if practitioner:
        role["practitioner"] = {"reference": f"#{practitioner['id']}"}
    if organization:
        role["organization"] = {"reference": f"#{organization['id']}"}
    if author.roles:
        role["code"] = [_coding(ebrim.Coded(*_coded_value(r)[:2], _coded_value(r)[2], "")) for r in author.roles]
    if author.specialties:
        role["specialty"] = [_coding(ebrim.Coded(*_coded_value(v)[:2], _coded_value(v)[2], "")) for v in author.specialties]
    out.append(role)
    return out, role["id"]


def document_reference(element: etree._Element, *, version: int = 1, document_url: str = "") -> dict:
    """A stored document entry (its ``ExtrinsicObject``) as the DocumentReference ITI-67
    returns: the same mapping, the other way (MHD: the hash in base64)."""
    obj = ebrim.read_object(element, ebrim.DE_SCHEMES, ebrim.DE_IDENTIFIERS)
    entry_uuid = obj.id
    dr: dict = {"resourceType": "DocumentReference", "id": entry_uuid.removeprefix("urn:uuid:"), "meta": {"versionId": str(version)},
                "identifier": [{"use": "official", "system": URI, "value": entry_uuid}],
                "status": STATUS.get(element.get("status") or "", "entered-in-error")}
    unique = obj.identifiers.get("uniqueId")
    if unique:
        root, _, ext = unique.partition("^")
        dr["masterIdentifier"] = {"system": f"urn:oid:{root}", "value": ext} if ext else {"system": URI, "value": f"urn:oid:{unique}"}
    for name, key in (("typeCode", "type"),):
        if obj.coded(name):
            dr[key] = _coding(obj.coded(name)[0])
    if obj.coded("classCode"):
        dr["category"] = [_coding(obj.coded("classCode")[0])]
    subject = _patient_reference(obj.identifiers.get("patientId", ""))
    if subject:
        dr["subject"] = subject
    if obj.coded("confidentialityCode"):
        dr["securityLabel"] = [_coding(c) for c in obj.coded("confidentialityCode")]
    contained, authors = [], []
    for n, a in enumerate(obj.authors, 1):
        resources, ref = _contained_author(a, n)
        contained += resources
        if ref:
            authors.append({"reference": f"#{ref}"})
    legal = obj.slot("legalAuthenticator")
    if legal:
        resources, ref = _contained_author(ebrim.Author(legal), 0)
        for r in resources:
            r["id"] = r["id"].replace("author0", "legal")
        contained += resources
        authenticator = {"reference": "#" + ref.replace("author0", "legal")}
    if authors:
        dr["contained"], dr["author"] = contained, authors
    if legal:
        dr["authenticator"] = authenticator
    att: dict = {"contentType": obj.attributes.get("mimeType") or "application/octet-stream"}
    for key, slot in (("language", "languageCode"),):
        if obj.slot(slot):
            att[key] = obj.slot(slot)
    if document_url:
        att["url"] = document_url
    if obj.slot("size") and obj.slot("size").isdigit():
        att["size"] = int(obj.slot("size"))
    if obj.slot("hash"):
        try:
            att["hash"] = base64.b64encode(bytes.fromhex(obj.slot("hash"))).decode()
        except ValueError:
            pass
    if obj.title:
        att["title"] = obj.title
    if obj.slot("creationTime") and fhir_datetime(obj.slot("creationTime")):
        att["creation"] = fhir_datetime(obj.slot("creationTime"))
    content: dict = {"attachment": att}
    if obj.coded("formatCode"):
        content["format"] = _coding(obj.coded("formatCode")[0])["coding"][0]
    dr["content"] = [content]
    context: dict = {}
    period = {k: fhir_datetime(obj.slot(s) or "") for k, s in (("start", "serviceStartTime"), ("end", "serviceStopTime")) if obj.slot(s)}
    if any(period.values()):
        context["period"] = {k: v for k, v in period.items() if v}
    source = _patient_reference(obj.slot("sourcePatientId") or "")
    if source:
        context["sourcePatientInfo"] = source
    for key, name in (("facilityType", "healthcareFacilityTypeCode"), ("practiceSetting", "practiceSettingCode")):
        if obj.coded(name):
            context[key] = _coding(obj.coded(name)[0])
    if obj.coded("eventCodeList"):
        context["event"] = [_coding(c) for c in obj.coded("eventCodeList")]
    if context:
        dr["context"] = context
    return dr


def submission_set_list(element: etree._Element, members: list[str], *, base: str = "") -> dict:
    """A stored submission set (its ``RegistryPackage``) as the List ITI-66 returns."""
    obj = ebrim.read_object(element, ebrim.SS_SCHEMES, ebrim.SS_IDENTIFIERS)
    lst: dict = {"resourceType": "List", "id": obj.id.removeprefix("urn:uuid:"), "status": "current", "mode": "working",
                 "code": {"coding": [{"system": LIST_TYPES, "code": "submissionset"}]},
                 "identifier": [{"use": "official", "system": URI, "value": obj.id}],
                 "entry": [{"item": {"reference": f"{base}DocumentReference/{m.removeprefix('urn:uuid:')}"}} for m in members]}
    if obj.identifiers.get("uniqueId"):
        lst["identifier"].insert(0, {"use": "usual", "system": URI, "value": f"urn:oid:{obj.identifiers['uniqueId']}"})
    if obj.title:
        lst["title"] = obj.title
    subject = _patient_reference(obj.identifiers.get("patientId", ""))
    if subject:
        lst["subject"] = subject
    if obj.slot("submissionTime") and fhir_datetime(obj.slot("submissionTime")):
        lst["date"] = fhir_datetime(obj.slot("submissionTime"))
    extensions = []
    if obj.coded("contentTypeCode"):
        extensions.append({"url": DESIGNATION_TYPE, "valueCodeableConcept": _coding(obj.coded("contentTypeCode")[0])})
    if obj.identifiers.get("sourceId"):
        extensions.append({"url": SOURCE_ID, "valueIdentifier": {"system": URI, "value": f"urn:oid:{obj.identifiers['sourceId']}"}})
    if extensions:
        lst["extension"] = extensions
    return lst


def operation_outcome(issues: list[tuple[str, str, str]]) -> dict:
    """An OperationOutcome: each issue as (severity, IHE or FHIR code, text). An IHE error
    code of ITI TF-3 Table 4.2.4.1-2 is given in ``details`` (MHD ITI-65 expected actions
    name the codes, not a code system: the coding has none)."""
    out = []
    for severity, code, text in issues:
        issue: dict = {"severity": severity, "code": "processing" if code.startswith(("XDS", "Partial", "Unknown", "Unavailable")) else code,
                       "diagnostics": text[:2000]}
        if code.startswith(("XDS", "Partial", "Unknown", "Unavailable")):
            issue["details"] = {"coding": [{"code": code}], "text": code}
        out.append(issue)
    return {"resourceType": "OperationOutcome", "issue": out}


# -- a conformant ITI-65 bundle --------------------------------------------------------------

def provide_bundle(submission_set: ebrim.NewObject, documents: list[tuple[ebrim.NewObject, bytes]], *, custodian: dict,
                   source_role: dict, when: str) -> dict:
    """The PDSm Comprehensive Provide Document Bundle a conformant document source sends for
    these XDS metadata (the same mapping, the other way): a DocumentReference and a Binary
    per document, the submission set List; ``custodian`` (an Organization, contained),
    ``source_role`` (the PractitionerRole who submits, contained), ``when`` (FHIR dateTime)."""
    request = ebrim.write_submission(submission_set, [d for d, _ in documents])
    elements = {el.get("id"): el for el in request.iter(f"{{{ebrim.RIM}}}ExtrinsicObject")}
    entries: list[dict] = []
    items = []
    for obj, data in documents:
        dr = document_reference(elements[obj.id])
        dr.pop("id"), dr.pop("meta")
        binary_url = f"urn:uuid:{uuid.uuid4()}"
        dr["status"] = "current"
        dr["date"] = when
        dr["contained"] = dr.get("contained", []) + [dict(custodian, id="custodian")]
        dr["custodian"] = {"reference": "#custodian"}
        att = dr["content"][0]["attachment"]
        att.update(url=binary_url, size=len(data), hash=base64.b64encode(hashlib.sha1(data).digest()).decode())
        period = dr.setdefault("context", {}).setdefault("period", {})
        period.setdefault("start", att.get("creation") or when)
        entries.append({"fullUrl": obj.id, "resource": dr, "request": {"method": "POST", "url": "DocumentReference"}})
        entries.append({"fullUrl": binary_url, "resource": {"resourceType": "Binary", "contentType": att["contentType"],
                                                            "data": base64.b64encode(data).decode()},
                        "request": {"method": "POST", "url": "Binary"}})
        items.append({"item": {"reference": obj.id}})
    ss = ebrim.read_object(request.find(f".//{{{ebrim.RIM}}}RegistryPackage"), ebrim.SS_SCHEMES, ebrim.SS_IDENTIFIERS)
    extensions = []
    if ss.coded("contentTypeCode"):
        extensions.append({"url": DESIGNATION_TYPE, "valueCodeableConcept": _coding(ss.coded("contentTypeCode")[0])})
    if ss.identifiers.get("sourceId"):
        extensions.append({"url": SOURCE_ID, "valueIdentifier": {"system": URI, "value": f"urn:oid:{ss.identifiers['sourceId']}"}})
    lst: dict = {"resourceType": "List", "extension": extensions, "status": "current", "mode": "working", "title": ss.title or None,
                 "code": {"coding": [{"system": LIST_TYPES, "code": "submissionset"}]}, "date": when,
                 "identifier": [{"use": "usual", "system": URI, "value": f"urn:oid:{ss.identifiers.get('uniqueId', '')}"},
                                {"use": "official", "system": URI, "value": submission_set.id}],
                 "contained": [dict(source_role, id="source")], "source": {"reference": "#source"}, "entry": items}
    subject = _patient_reference(ss.identifiers.get("patientId", ""))
    if subject:
        lst["subject"] = subject
    entries.insert(0, {"fullUrl": submission_set.id, "resource": {k: v for k, v in lst.items() if v is not None},
                       "request": {"method": "POST", "url": "List"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
