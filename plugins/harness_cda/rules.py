"""Built-in CDA rules, no kit needed: the CI-SIS header, the body, and every INS identifier.

A domain library (pure functions of a parsed document, no pytest or pluggy), in the CDA
library so that every service plugin may use it (:mod:`.builtin` makes checks of it): the DMP
plugin runs it on the documents the software sends, and the MSSanté/XDM plugin on the
documents inside an archive. The official kit stays the reference for full schematron
coverage; these rules are the ones a document must meet to be accepted by the DMP, written
from the CI-SIS "structuration minimale des documents de santé" (template
1.2.250.1.213.1.1.1.1), checked assertion by assertion against the kit's generic header
schematron (``profils/structurationMinimale``), so that the official examples the kit
accepts are accepted here.

Each rule gives :class:`~harness_cda.level1.Problem` (rule, severity, location, message);
locations are paths from the ``ClinicalDocument``. The INS rules are the INS plugin's
(:mod:`harness_ins.identity`, :mod:`harness_ins.cda`), applied to the patient and to every
identifier rooted in an INS OID anywhere in the document.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from harness import Problem, Severity, catalogue
from harness_ins import cda as ins_cda
from harness_ins.identity import check_matricule, classify_system, production_problem

from . import level1
from .terminology import readable_path
M = catalogue(__name__)

HL7 = "urn:hl7-org:v3"
NS = {"cda": HL7}
REALM = "FR"
TYPE_ID = ("2.16.840.1.113883.1.3", "POCD_HD000040")
FR_TEMPLATE = "2.16.840.1.113883.2.8.2.1"
STRUCMIN_TEMPLATE = "1.2.250.1.213.1.1.1.1"
CONFIDENTIALITY_SYSTEM = "2.16.840.1.113883.5.25"
CONFIDENTIALITY = ("N", "R", "V")
INS_ARC = "1.2.250.1.213.1.4."
_OID = re.compile(r"^[0-2](\.(0|[1-9]\d*))*$")
_UUID = re.compile(r"^[A-Fa-f\d]{8}-[A-Fa-f\d]{4}-[A-Fa-f\d]{4}-[A-Fa-f\d]{4}-[A-Fa-f\d]{12}$")
_RUID = re.compile(r"^[A-Za-z][A-Za-z\d\-]*$")
_TS = re.compile(r"^(?P<date>\d{4}(\d{2}(\d{2})?)?)(?P<time>\d{2}(\d{2}(\d{2}(\.\d{1,4})?)?)?)?(?P<zone>[+-]\d{4})?$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}-[A-Z]{2}$")


@dataclass(frozen=True)
class Software:
    """The software an authoring device names: where a document says who produced it."""

    manufacturer_model_name: str
    software_name: str
    location: str


def _text(el: etree._Element | None) -> str:
    return " ".join("".join(el.itertext()).split()) if el is not None else ""


def _valid_id_root(root: str) -> bool:
    return bool(_OID.match(root) or _UUID.match(root) or _RUID.match(root))


def valid_ts(value: str) -> bool:
    """An HL7 TS value (``YYYY[MM[DD[HH[MM[SS[.S]]]]]][+-ZZZZ]``) naming a real date and time."""
    m = _TS.match(value or "")
    if not m:
        return False
    digits = m.group("date") + (m.group("time") or "")
    parts = [int(digits[i:j]) for i, j in ((4, 6), (6, 8), (8, 10), (10, 12), (12, 14)) if len(digits) >= j]
    limits = ((1, 12), (1, 31), (0, 23), (0, 59), (0, 59))
    return all(lo <= v <= hi for v, (lo, hi) in zip(parts, limits))


class _Rules:
    """One document's problems, in document order of the rules."""

    def __init__(self, root: etree._Element, base: str) -> None:
        self.root = root
        self.base = base
        self.problems: list[Problem] = []

    def at(self, path: str = "") -> str:
        return f"{self.base}/{path}" if path else self.base

    def fail(self, rule: str, path: str, message, severity: Severity = Severity.ERROR) -> None:
        self.problems.append(Problem(rule, severity, self.at(path), message))

    def find(self, path: str) -> list[etree._Element]:
        return self.root.xpath(path, namespaces=NS)

    def one(self, rule: str, name: str) -> etree._Element | None:
        """The single ``name`` child (with no nullFlavor) the header must have."""
        found = [e for e in self.root.findall(f"cda:{name}", NS) if e.get("nullFlavor") is None]
        if len(found) != 1:
            self.fail(rule, name, M("hdr.count", element=name, count=len(found)))
        return found[0] if found else None


def check_header(root: etree._Element, base: str = "/ClinicalDocument") -> list[Problem]:
    """The CI-SIS minimal structure of a document header."""
    r = _Rules(root, base)
    realm = r.find("cda:realmCode")
    if len(realm) != 1 or realm[0].get("code") != REALM:
        r.fail("CDA-HDR-01", "realmCode", M("hdr.realm", found=", ".join(e.get("code") or "-" for e in realm) or "-"))
    type_ids = r.find("cda:typeId")
    if len(type_ids) != 1 or (type_ids[0].get("root"), type_ids[0].get("extension")) != TYPE_ID:
        r.fail("CDA-HDR-02", "typeId", M("hdr.type_id", root=TYPE_ID[0], extension=TYPE_ID[1]))
    templates = [(t.get("root") or "").strip() for t in r.find("cda:templateId")]
    for required in (FR_TEMPLATE, STRUCMIN_TEMPLATE):
        if templates.count(required) != 1:
            r.fail("CDA-HDR-03", "templateId", M("hdr.template", template=required, count=templates.count(required)))
    if not [t for t in templates if t not in (FR_TEMPLATE, STRUCMIN_TEMPLATE)]:
        r.fail("CDA-HDR-03", "templateId", M("hdr.template_volet"))
    doc_id = r.one("CDA-HDR-04", "id")
    if doc_id is not None and not _valid_id_root((doc_id.get("root") or "").strip()):
        r.fail("CDA-HDR-04", "id/@root", M("hdr.id_root", root=doc_id.get("root") or ""))
    code = r.one("CDA-HDR-05", "code")
    if code is not None:
        missing = [a for a in ("code", "codeSystem", "displayName") if not (code.get(a) or "").strip()]
        if missing:
            r.fail("CDA-HDR-05", "code", M("hdr.attributes", element="code", missing=", ".join(missing)))
    title = r.one("CDA-HDR-06", "title")
    if title is not None and not _text(title):
        r.fail("CDA-HDR-06", "title", M("hdr.empty", element="title"))
    effective = r.one("CDA-HDR-07", "effectiveTime")
    if effective is not None:
        value = (effective.get("value") or "").strip()
        parts = _TS.match(value)
        if not valid_ts(value):
            r.fail("CDA-HDR-07", "effectiveTime/@value", M("hdr.ts", value=value))
        elif len(parts.group("date")) < 8 or not parts.group("time"):
            r.fail("CDA-HDR-07", "effectiveTime/@value", M("hdr.ts_precision", value=value), Severity.WARNING)
    conf = r.one("CDA-HDR-08", "confidentialityCode")
    if conf is not None and (conf.get("code") not in CONFIDENTIALITY or conf.get("codeSystem") != CONFIDENTIALITY_SYSTEM):
        r.fail("CDA-HDR-08", "confidentialityCode", M("hdr.confidentiality", code=conf.get("code") or "-", system=conf.get("codeSystem") or "-"))
    lang = r.one("CDA-HDR-09", "languageCode")
    if lang is not None and not _LANGUAGE.match(lang.get("code") or ""):
        r.fail("CDA-HDR-09", "languageCode/@code", M("hdr.language", code=lang.get("code") or ""))
    _versions(r)
    _record_target(r)
    _authors(r)
    custodian = [c for c in r.find("cda:custodian[not(@nullFlavor)]") if c.find("cda:assignedCustodian", NS) is not None]
    if len(custodian) != 1:
        r.fail("CDA-HDR-13", "custodian", M("hdr.count", element="custodian", count=len(custodian)))
    elif not custodian[0].xpath("cda:assignedCustodian/cda:representedCustodianOrganization/cda:id[@root]", namespaces=NS):
        r.fail("CDA-HDR-13", "custodian/assignedCustodian/representedCustodianOrganization/id", M("hdr.no_id", element="custodian"))
    _legal_authenticator(r)
    _documentation_of(r)
    _component_of(r)
    components = r.find("cda:component")
    bodies = r.find("cda:component/cda:structuredBody | cda:component/cda:nonXMLBody")
    if len(components) != 1 or len(bodies) != 1:
        r.fail("CDA-HDR-17", "component", M("hdr.component", count=len(bodies)))
    return r.problems


def _versions(r: _Rules) -> None:
    set_id = r.one("CDA-HDR-10", "setId")
    if set_id is not None and not _valid_id_root((set_id.get("root") or "").strip()):
        r.fail("CDA-HDR-10", "setId/@root", M("hdr.id_root", root=set_id.get("root") or ""))
    version = r.one("CDA-HDR-10", "versionNumber")
    number = None
    if version is not None:
        text = (version.get("value") or "").strip()
        if not text.isdigit() or int(text) < 1:
            r.fail("CDA-HDR-10", "versionNumber/@value", M("hdr.version_number", value=text))
        else:
            number = int(text)
    replaced = r.find("cda:relatedDocument[@typeCode='RPLC']")
    if len(replaced) > 1:
        r.fail("CDA-HDR-10", "relatedDocument", M("hdr.count", element="relatedDocument[@typeCode='RPLC']", count=len(replaced)))
    for n, rel in enumerate(replaced, 1):
        if not rel.xpath("cda:parentDocument/cda:id[@root]", namespaces=NS):
            r.fail("CDA-HDR-10", f"relatedDocument[{n}]/parentDocument/id", M("hdr.no_id", element="parentDocument"))
    if number is not None and number > 1 and not replaced:
        r.fail("CDA-HDR-10", "relatedDocument", M("hdr.version_without_parent", number=number), Severity.WARNING)


def _record_target(r: _Rules) -> None:
    targets = r.find("cda:recordTarget[not(@nullFlavor)]")
    if len(targets) != 1:
        r.fail("CDA-HDR-11", "recordTarget", M("hdr.count", element="recordTarget", count=len(targets)))
        return
    ids = targets[0].xpath("cda:patientRole/cda:id[@root and @extension]", namespaces=NS)
    if not ids:
        r.fail("CDA-HDR-11", "recordTarget/patientRole/id", M("hdr.patient_id"))


def _authors(r: _Rules) -> None:
    authors = [a for a in r.find("cda:author[not(@nullFlavor)]") if a.find("cda:assignedAuthor", NS) is not None]
    if not authors:
        r.fail("CDA-HDR-12", "author", M("hdr.count_min", element="author"))
    for n, author in enumerate(authors, 1):
        where = f"author[{n}]"
        time = author.find("cda:time", NS)
        if time is None or not valid_ts(time.get("value") or ""):
            r.fail("CDA-HDR-12", f"{where}/time", M("hdr.author_time"))
        assigned = author.find("cda:assignedAuthor", NS)
        if not assigned.xpath("cda:id[@root]", namespaces=NS):
            r.fail("CDA-HDR-12", f"{where}/assignedAuthor/id", M("hdr.no_id", element="assignedAuthor"))
        device = assigned.find("cda:assignedAuthoringDevice", NS)
        person = assigned.find("cda:assignedPerson", NS)
        if person is not None:
            code = assigned.find("cda:code", NS)
            if code is None or not (code.get("code") and code.get("codeSystem")):
                r.fail("CDA-HDR-12", f"{where}/assignedAuthor/code", M("hdr.author_specialty"))
        elif device is not None:
            for name in ("manufacturerModelName", "softwareName"):
                if not _text(device.find(f"cda:{name}", NS)):
                    r.fail("CDA-HDR-12", f"{where}/assignedAuthor/assignedAuthoringDevice/{name}", M("hdr.device", element=name))
        else:
            r.fail("CDA-HDR-12", f"{where}/assignedAuthor", M("hdr.author_kind"))
    if authors and not software(r.root, r.base):
        r.fail("CDA-HDR-12", "author", M("hdr.no_software"), Severity.WARNING)


def _legal_authenticator(r: _Rules) -> None:
    found = r.find("cda:legalAuthenticator")
    signed = [a for a in found if a.xpath("cda:signatureCode[@code='S']", namespaces=NS)]
    if len(found) != 1 or len(signed) != 1:
        r.fail("CDA-HDR-14", "legalAuthenticator", M("hdr.legal_authenticator", count=len(found), signed=len(signed)))
        return
    auth = signed[0]
    time = auth.find("cda:time", NS)
    if time is None or not valid_ts(time.get("value") or ""):
        r.fail("CDA-HDR-14", "legalAuthenticator/time", M("hdr.ts", value=(time.get("value") if time is not None else "") or ""))
    if not auth.xpath("cda:assignedEntity/cda:id[@root]", namespaces=NS):
        r.fail("CDA-HDR-14", "legalAuthenticator/assignedEntity/id", M("hdr.no_id", element="legalAuthenticator/assignedEntity"))


def _documentation_of(r: _Rules) -> None:
    events = r.find("cda:documentationOf[not(@nullFlavor)]/cda:serviceEvent")
    if not events:
        r.fail("CDA-HDR-15", "documentationOf", M("hdr.count_min", element="documentationOf/serviceEvent"))
        return
    first = r.find("cda:documentationOf[1]/cda:serviceEvent")
    if first:
        if len(first[0].findall("cda:effectiveTime", NS)) != 1:
            r.fail("CDA-HDR-15", "documentationOf[1]/serviceEvent/effectiveTime", M("hdr.count", element="serviceEvent/effectiveTime",
                                                                                   count=len(first[0].findall("cda:effectiveTime", NS))))
        if len(first[0].findall("cda:performer", NS)) != 1:
            r.fail("CDA-HDR-15", "documentationOf[1]/serviceEvent/performer", M("hdr.count", element="serviceEvent/performer",
                                                                               count=len(first[0].findall("cda:performer", NS))))


def _component_of(r: _Rules) -> None:
    encounters = r.find("cda:componentOf[not(@nullFlavor)]/cda:encompassingEncounter")
    if len(encounters) != 1:
        r.fail("CDA-HDR-16", "componentOf", M("hdr.count", element="componentOf/encompassingEncounter", count=len(encounters)))
        return
    enc = encounters[0]
    if enc.find("cda:effectiveTime", NS) is None:
        r.fail("CDA-HDR-16", "componentOf/encompassingEncounter/effectiveTime", M("hdr.count", element="encompassingEncounter/effectiveTime", count=0))
    facility = enc.find("cda:location/cda:healthCareFacility/cda:code", NS)
    if facility is None or not (facility.get("code") and facility.get("codeSystem")):
        r.fail("CDA-HDR-16", "componentOf/encompassingEncounter/location/healthCareFacility/code", M("hdr.facility"))


def software(root: etree._Element, base: str = "/ClinicalDocument") -> list[Software]:
    """Every authoring device of the header that names its software."""
    out = []
    for n, author in enumerate(root.findall("cda:author", NS), 1):
        device = author.find("cda:assignedAuthor/cda:assignedAuthoringDevice", NS)
        if device is None:
            continue
        model, name = _text(device.find("cda:manufacturerModelName", NS)), _text(device.find("cda:softwareName", NS))
        if model or name:
            out.append(Software(model, name, f"{base}/author[{n}]/assignedAuthor/assignedAuthoringDevice"))
    return out


def check_body(root: etree._Element, base: str = "/ClinicalDocument") -> list[Problem]:
    """A level-1 body against the level-1 model; a structured body has at least one section."""
    if level1.is_level1(root):
        return level1.check(root, base)[1]
    body = root.find("cda:component/cda:structuredBody", NS)
    if body is None:
        return [Problem("CDA-BODY-01", Severity.ERROR, f"{base}/component", M("body.none"))]
    if not body.xpath("cda:component/cda:section", namespaces=NS):
        return [Problem("CDA-BODY-01", Severity.ERROR, f"{base}/component/structuredBody", M("body.no_section"))]
    return []


@dataclass
class InsReading:
    """The INS rules' problems on one document, and what a report must not show: every
    matricule found, and whether one is from a production system."""

    problems: list[Problem]
    matricules: set[str]
    production: bool


def check_ins(tree: etree._ElementTree, root: etree._Element) -> InsReading:
    """The INS plugin's rules on the patient (identifiers, strict traits, name qualifiers) and
    on every other identifier rooted in an INS OID (participants, authenticators, body)."""
    problems: list[Problem] = []
    matricules: set[str] = set()
    production = False
    for ident in ins_cda.read_identities(tree):
        for i in ident.identifiers:
            system = classify_system(i.root)
            if system.is_ins:
                matricules.add(i.extension)
            prod = production_problem(system)
            if prod is not None:
                production = True
                problems.append(Problem(prod.rule, prod.severity, i.location, prod.message))
        for location, p, _ in ins_cda.check_identity(ident):
            problems.append(Problem(p.rule, p.severity, location, p.message))
    patient_ids = set(root.xpath("cda:recordTarget/cda:patientRole/cda:id", namespaces=NS))
    for el in root.xpath(".//*[starts-with(normalize-space(@root), $arc)]", namespaces=NS, arc=INS_ARC):
        if el in patient_ids:
            continue
        location = readable_path(el, root)
        system = classify_system(el.get("root"))
        if not system.is_ins:
            problems.append(Problem("INS-SYS-02", Severity.WARNING, location, M("ins.unknown_arc", oid=system.oid)))
            continue
        matricules.add((el.get("extension") or "").strip())
        prod = production_problem(system)
        if prod is not None:
            production = True
            problems.append(Problem(prod.rule, prod.severity, location, prod.message))
        problems += [Problem(p.rule, p.severity, location, p.message) for p in check_matricule(el.get("extension"))]
    return InsReading(problems, {m for m in matricules if m}, production)
