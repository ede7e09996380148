"""Does a document entry's metadata say what its CDA document says?

The CI-SIS (volet partage de documents de santé) derives each XDS attribute from the CDA
header; this module reads the header the same way and compares, attribute by attribute.
Each disagreement is one :class:`~harness_cda.document.Problem` naming both places: the
metadata (its ebRIM path) and the document (its header path).

Also used the other way round: :func:`derive` gives the metadata a conformant sender
writes for a document (the demo vendor uses it).

Derivations (CI-SIS): typeCode = ``code``; confidentialityCode includes
``confidentialityCode``; healthcareFacilityTypeCode = ``componentOf/encompassingEncounter/
location/healthCareFacility/code``; practiceSettingCode = the performer's (else the
author's) organisation ``standardIndustryClassCode``; patientId = the INS of
``recordTarget``; author = ``author/assignedAuthor`` (id, specialty ``code``);
creationTime = ``effectiveTime`` and serviceStart/StopTime = ``documentationOf/serviceEvent/
effectiveTime/low|high``, in UTC; languageCode; title; uniqueId = ``id`` (root^extension);
legalAuthenticator; eventCodeList includes ``serviceEvent/code``; hash (SHA-1) and size of
the exact bytes; mimeType text/xml; for a level-1 document, formatCode from IHE XDS-SD (PDF,
text). classCode and a structured document's formatCode depend on tables of the volets,
not on the header: they are not compared here.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from lxml import etree

from harness import Problem, Severity, catalogue
from harness_cda import level1

from .ebrim import DOCUMENT_ENTRY_TYPE, NewObject, RegistryObject
from .rules import parse_cx

M = catalogue(__name__)

HL7 = "urn:hl7-org:v3"
NS = {"cda": HL7}
INS_ROOTS = ("1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11")
CONFIDENTIALITY_SYSTEM = "2.16.840.1.113883.5.25"
LEVEL1_FORMATS = {"application/pdf": "urn:ihe:iti:xds-sd:pdf:2008", "text/plain": "urn:ihe:iti:xds-sd:text:2008"}


@dataclass(frozen=True)
class Value:
    """What the header says for one attribute, and where."""

    value: tuple[str, ...] | str | None
    path: str


def utc(ts: str) -> str:
    """An HL7 TS as an XDS DTM: with a UTC offset, converted to UTC; without, as it is."""
    ts = (ts or "").strip()
    if len(ts) > 5 and ts[-5] in "+-" and ts[-4:].isdigit():
        digits, zone = ts[:-5].split(".")[0], ts[-5:]
        fmt = {8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}.get(len(digits))
        if fmt is None:
            return digits
        try:
            when = datetime.strptime(digits, fmt)
        except ValueError:
            return digits
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * (1 if zone[0] == "+" else -1)
        return (when - offset).strftime(fmt)
    return ts.split(".")[0]


def _code(el: etree._Element | None) -> tuple[str, str] | None:
    return (el.get("code") or "", el.get("codeSystem") or "") if el is not None and el.get("code") else None


def header(root: etree._Element, base: str = "/ClinicalDocument") -> dict[str, Value]:
    """Each attribute's value as the CDA header gives it."""
    def first(path: str) -> etree._Element | None:
        found = root.xpath(path, namespaces=NS)
        return found[0] if found else None

    out: dict[str, Value] = {}
    out["typeCode"] = Value(_code(first("cda:code")), f"{base}/code")
    conf = first("cda:confidentialityCode")
    out["confidentialityCode"] = Value(_code(conf), f"{base}/confidentialityCode")
    out["healthcareFacilityTypeCode"] = Value(_code(first("cda:componentOf/cda:encompassingEncounter/cda:location/cda:healthCareFacility/cda:code")),
                                              f"{base}/componentOf/encompassingEncounter/location/healthCareFacility/code")
    performer = "cda:documentationOf/cda:serviceEvent/cda:performer/cda:assignedEntity/cda:representedOrganization/cda:standardIndustryClassCode"
    author_org = "cda:author/cda:assignedAuthor/cda:representedOrganization/cda:standardIndustryClassCode"
    setting = first(performer)
    out["practiceSettingCode"] = (Value(_code(setting), f"{base}/documentationOf/serviceEvent/performer/assignedEntity/representedOrganization/standardIndustryClassCode")
                                  if setting is not None else
                                  Value(_code(first(author_org)), f"{base}/author/assignedAuthor/representedOrganization/standardIndustryClassCode"))
    ins = [(i.get("extension") or "", i.get("root") or "") for i in root.xpath("cda:recordTarget/cda:patientRole/cda:id", namespaces=NS)
           if (i.get("root") or "").strip() in INS_ROOTS]
    out["patientId"] = Value(ins[0] if ins else None, f"{base}/recordTarget/patientRole/id")
    out["authorPerson"] = Value(tuple(sorted({(i.get("extension") or "") for i in root.xpath("cda:author/cda:assignedAuthor[cda:assignedPerson]/cda:id", namespaces=NS)})),
                                f"{base}/author/assignedAuthor/id")
    out["authorSpecialty"] = Value(tuple(sorted({c.get("code") or "" for c in root.xpath("cda:author/cda:assignedAuthor/cda:code", namespaces=NS)})),
                                   f"{base}/author/assignedAuthor/code")
    effective = first("cda:effectiveTime")
    out["creationTime"] = Value(utc(effective.get("value")) if effective is not None else None, f"{base}/effectiveTime")
    low, high = first("cda:documentationOf/cda:serviceEvent/cda:effectiveTime/cda:low"), first("cda:documentationOf/cda:serviceEvent/cda:effectiveTime/cda:high")
    out["serviceStartTime"] = Value(utc(low.get("value")) if low is not None else None, f"{base}/documentationOf/serviceEvent/effectiveTime/low")
    out["serviceStopTime"] = Value(utc(high.get("value")) if high is not None else None, f"{base}/documentationOf/serviceEvent/effectiveTime/high")
    lang = first("cda:languageCode")
    out["languageCode"] = Value(lang.get("code") if lang is not None else None, f"{base}/languageCode")
    title = first("cda:title")
    out["title"] = Value(" ".join("".join(title.itertext()).split()) if title is not None else None, f"{base}/title")
    doc_id = first("cda:id")
    out["uniqueId"] = Value((f"{doc_id.get('root')}^{doc_id.get('extension')}" if doc_id.get("extension") else doc_id.get("root"))
                            if doc_id is not None else None, f"{base}/id")
    legal = first("cda:legalAuthenticator/cda:assignedEntity/cda:id")
    out["legalAuthenticator"] = Value(legal.get("extension") if legal is not None else None, f"{base}/legalAuthenticator/assignedEntity/id")
    out["eventCode"] = Value(_code(first("cda:documentationOf/cda:serviceEvent/cda:code")), f"{base}/documentationOf/serviceEvent/code")
    if level1.is_level1(root):
        body, _ = level1.read_body(root, base)
        out["formatCode"] = Value(LEVEL1_FORMATS.get(body.media_type) if body else None, f"{base}/component/nonXMLBody/text/@mediaType")
    return out


def _xcn_id(value: str) -> str:
    return (value or "").split("^", 1)[0]


def located(problems: list[Problem], meta_at: str, doc_at: str) -> list[Problem]:
    """``problems`` of :func:`disagreements` with each side's location prefixed by where
    the metadata and the document were recorded (``dmp-meta/001``, ``mss-xdm/001-1:IHE_XDM/...``)."""
    out = []
    for p in problems:
        meta, _, cda = p.location.partition(" ↔ ")
        out.append(Problem(p.rule, p.severity, f"{meta_at} {meta} ↔ {doc_at} {cda}", p.message))
    return out


def disagreements(entry: RegistryObject, data: bytes, root: etree._Element, base: str = "/ClinicalDocument") -> list[Problem]:
    """Every attribute of ``entry`` that disagrees with the document ``data`` (parsed: ``root``)."""
    h = header(root, base)
    problems: list[Problem] = []

    def differ(rule: str, attribute: str, meta_value, meta_path: str, cda: Value) -> None:
        problems.append(Problem(rule, Severity.ERROR, f"{meta_path} ↔ {cda.path}",
                                M("agree.differ", attribute=attribute, metadata=_show(meta_value), document=_show(cda.value))))

    for rule, name in (("XDS-CDA-01", "typeCode"), ("XDS-CDA-03", "healthcareFacilityTypeCode"), ("XDS-CDA-04", "practiceSettingCode")):
        coded = entry.coded(name)
        meta = (coded[0].code, coded[0].scheme) if coded else None
        if h[name].value is not None and meta != h[name].value:
            differ(rule, name, meta, coded[0].location if coded else entry.location, h[name])
    conf = h["confidentialityCode"]
    metas = [(c.code, c.scheme) for c in entry.coded("confidentialityCode")]
    if conf.value is not None and conf.value not in metas:
        differ("XDS-CDA-02", "confidentialityCode", metas, entry.location, conf)
    patient = h["patientId"]
    cx = parse_cx(entry.identifiers.get("patientId", ""))
    if patient.value is not None and cx != patient.value:
        differ("XDS-CDA-05", "patientId", entry.identifiers.get("patientId"), entry.location, patient)
    people = {_xcn_id(a.person) for a in entry.authors if a.person}
    if people and h["authorPerson"].value and not people & set(h["authorPerson"].value):
        differ("XDS-CDA-06", "authorPerson", sorted(people), entry.authors[0].location, h["authorPerson"])
    specialties = {s.split("^", 1)[0] for a in entry.authors for s in a.specialties}
    if h["authorSpecialty"].value and specialties != set(h["authorSpecialty"].value):
        differ("XDS-CDA-06", "authorSpecialty", sorted(specialties), entry.authors[0].location if entry.authors else entry.location, h["authorSpecialty"])
    for rule, name in (("XDS-CDA-07", "creationTime"), ("XDS-CDA-08", "serviceStartTime"), ("XDS-CDA-08", "serviceStopTime")):
        meta, cda = entry.slot(name), h[name].value
        if meta is not None and cda and not (len(meta) >= 8 and cda.startswith(meta) if len(meta) <= len(cda) else meta.startswith(cda)):
            differ(rule, name, meta, entry.place(name), h[name])
    for rule, name in (("XDS-CDA-09", "languageCode"), ("XDS-CDA-11", "legalAuthenticator")):
        meta = entry.slot(name)
        value = _xcn_id(meta) if name == "legalAuthenticator" and meta else meta
        if meta is not None and h[name].value is not None and value != h[name].value:
            differ(rule, name, meta, entry.place(name), h[name])
    if h["title"].value is not None and entry.title and entry.title != h["title"].value:
        differ("XDS-CDA-10", "title", entry.title, entry.place("title"), h["title"])
    unique = entry.identifiers.get("uniqueId")
    if unique and h["uniqueId"].value and unique != h["uniqueId"].value:
        differ("XDS-CDA-11", "uniqueId", unique, entry.location, h["uniqueId"])
    event = h["eventCode"].value
    if event is not None and entry.coded("eventCodeList") and event not in [(c.code, c.scheme) for c in entry.coded("eventCodeList")]:
        differ("XDS-CDA-12", "eventCodeList", [(c.code, c.scheme) for c in entry.coded("eventCodeList")], entry.location, h["eventCode"])
    if "formatCode" in h and h["formatCode"].value and entry.coded("formatCode") and entry.coded("formatCode")[0].code != h["formatCode"].value:
        differ("XDS-CDA-13", "formatCode", entry.coded("formatCode")[0].code, entry.coded("formatCode")[0].location, h["formatCode"])
    mime = entry.attributes.get("mimeType")
    if mime and mime != "text/xml":
        problems.append(Problem("XDS-CDA-14", Severity.ERROR, f"{entry.place('mimeType')} ↔ {base}", M("agree.mime", value=mime)))
    digest, size = hashlib.sha1(data).hexdigest(), str(len(data))
    if entry.slot("hash") and entry.slot("hash").lower() != digest:
        problems.append(Problem("XDS-CDA-15", Severity.ERROR, f"{entry.place('hash')} ↔ {base}", M("agree.hash", metadata=entry.slot("hash"), actual=digest)))
    if entry.slot("size") and entry.slot("size") != size:
        problems.append(Problem("XDS-CDA-15", Severity.ERROR, f"{entry.place('size')} ↔ {base}", M("agree.size", metadata=entry.slot("size"), actual=size)))
    return problems


def _show(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return f"{value[0]} ({value[1]})"
    if isinstance(value, (list, tuple)):
        return ", ".join(_show(v) for v in value) or "-"
    return str(value)


def derive(entry_id: str, data: bytes, root: etree._Element, *, class_code: tuple[str, str, str], format_code: tuple[str, str, str] | None = None,
           institution: str = "", extra_confidentiality: list[tuple[str, str, str]] = ()) -> NewObject:
    """The document entry a conformant sender writes for the document ``data``: every
    attribute the header gives (see the module's derivations); the class code, and the
    format code of a structured document, are the caller's (they come from the volet)."""
    h = header(root)

    def coded(c: etree._Element) -> tuple[str, str, str]:
        return (c.get("code") or "", c.get("codeSystem") or "", c.get("displayName") or "")

    def at(path: str) -> etree._Element:
        return root.xpath(path, namespaces=NS)[0]

    setting = root.xpath("cda:documentationOf/cda:serviceEvent/cda:performer/cda:assignedEntity/cda:representedOrganization/cda:standardIndustryClassCode"
                         " | cda:author/cda:assignedAuthor/cda:representedOrganization/cda:standardIndustryClassCode", namespaces=NS)
    ins_id, ins_root = h["patientId"].value
    patient = f"{ins_id}^^^&{ins_root}&ISO^NH"
    fmt = format_code or ((h["formatCode"].value, "1.3.6.1.4.1.19376.1.2.3", "") if "formatCode" in h else None)
    authors = []
    for a in root.xpath("cda:author/cda:assignedAuthor[cda:assignedPerson]", namespaces=NS):
        aid = a.find("cda:id", NS)
        code = a.find("cda:code", NS)
        name = a.find("cda:assignedPerson/cda:name", NS)
        family = name.findtext("cda:family", namespaces=NS) if name is not None else ""
        given = name.findtext("cda:given", namespaces=NS) if name is not None else ""
        author = {"authorPerson": [f"{aid.get('extension')}^{family}^{given}^^^^^^&{aid.get('root')}&ISO^D^^^IDNPS"]}
        if institution:
            author["authorInstitution"] = [institution]
        if code is not None:
            author["authorSpecialty"] = [f"{code.get('code')}^{code.get('displayName') or ''}^{code.get('codeSystem')}"]
        authors.append(author)
    slots = {"creationTime": [h["creationTime"].value], "languageCode": [h["languageCode"].value],
             "sourcePatientId": [patient.removesuffix("^NH") + "^PI"], "hash": [hashlib.sha1(data).hexdigest()], "size": [str(len(data))]}
    for name in ("serviceStartTime", "serviceStopTime"):
        if h[name].value:
            slots[name] = [h[name].value]
    if h["legalAuthenticator"].value:
        legal = root.find("cda:legalAuthenticator/cda:assignedEntity/cda:id", NS)
        slots["legalAuthenticator"] = [f"{legal.get('extension')}^^^^^^^^&{legal.get('root')}&ISO^D^^^IDNPS"]
    return NewObject(
        id=entry_id, slots=slots, title=h["title"].value or "",
        coded={"classCode": [class_code], "typeCode": [coded(at("cda:code"))],
               "confidentialityCode": [coded(at("cda:confidentialityCode")), *extra_confidentiality],
               "formatCode": [fmt] if fmt else [],
               "healthcareFacilityTypeCode": [coded(at("cda:componentOf/cda:encompassingEncounter/cda:location/cda:healthCareFacility/cda:code"))],
               "practiceSettingCode": [coded(setting[0])] if setting else []},
        identifiers={"patientId": patient, "uniqueId": h["uniqueId"].value},
        authors=authors, attributes={"mimeType": "text/xml", "objectType": DOCUMENT_ENTRY_TYPE})
