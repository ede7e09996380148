"""What XDS metadata must say: IHE ITI TF-3 4.2 (attributes, their optionality per
transaction), and the French profile (CI-SIS, volet partage de documents de santé: title,
author, patient identified by an INS).

``check_submission(sub, profile)`` gives the problems of one submission; ``profile`` is
``"xds"`` (ITI-41 provide and register: the repository computes hash and size) or
``"xdm"`` (an archive: hash, size and URI are the source's to give).
"""
from __future__ import annotations

import re
from collections import Counter

from harness import Problem, Severity, catalogue
from harness_ins.identity import check_matricule, classify_system, production_problem

from .ebrim import (CODED, DE_SCHEMES, DOCUMENT_ENTRY_TYPE, HAS_MEMBER, ON_DEMAND_ENTRY_TYPE, RPLC, SS_SCHEMES, UPDATE_STATUS,
                    RegistryObject, Submission)

M = catalogue(__name__)

_OID = re.compile(r"^[0-2](\.(0|[1-9]\d*))+$")
_UNIQUE_ID = re.compile(r"^[0-2](\.(0|[1-9]\d*))+(\^[^\s^]{1,64})?$")  # OID, or OID^extension (CI-SIS)
_DTM = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2})?)?)?)?)?$")
_CX = re.compile(r"^(?P<id>[^\^&]+)\^\^\^&(?P<oid>[0-2](\.(0|[1-9]\d*))+)&ISO(\^(?P<type>[A-Z]{2}))?$")
_HASH = re.compile(r"^[0-9a-fA-F]{40}$")
KNOWN_ASSOCIATIONS = {HAS_MEMBER, RPLC, UPDATE_STATUS, "urn:ihe:iti:2007:AssociationType:XFRM", "urn:ihe:iti:2007:AssociationType:APND",
                      "urn:ihe:iti:2007:AssociationType:XFRM_RPLC", "urn:ihe:iti:2007:AssociationType:signs",
                      "urn:ihe:iti:2010:AssociationType:IsSnapshotOf"}
# slots every document entry carries, by profile (ITI TF-3 Table 4.3.1-3, R for the source):
# ITI-41 (the repository computes hash and size), ITI-42 (the repository gave them), XDM
DE_SLOTS = {"xds": ("creationTime", "languageCode", "sourcePatientId"),
            "register": ("creationTime", "languageCode", "sourcePatientId", "hash", "size", "repositoryUniqueId"),
            "xdm": ("creationTime", "languageCode", "sourcePatientId", "hash", "size", "URI")}
LIFECYCLE = {RPLC, "urn:ihe:iti:2007:AssociationType:XFRM", "urn:ihe:iti:2007:AssociationType:APND",
             "urn:ihe:iti:2007:AssociationType:XFRM_RPLC"}


def parse_cx(value: str) -> tuple[str, str] | None:
    """``ID^^^&OID&ISO[^TYPE]`` -> (ID, OID)."""
    m = _CX.match(value or "")
    return (m.group("id"), m.group("oid")) if m else None


def valid_dtm(value: str) -> bool:
    if not _DTM.match(value or ""):
        return False
    digits = value
    parts = [int(digits[i:j]) for i, j in ((4, 6), (6, 8), (8, 10), (10, 12), (12, 14)) if len(digits) >= j]
    return all(lo <= v <= hi for v, (lo, hi) in zip(parts, ((1, 12), (1, 31), (0, 23), (0, 59), (0, 59))))


class _Rules:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, rule: str, location: str, message, severity: Severity = Severity.ERROR) -> None:
        self.problems.append(Problem(rule, severity, location, message))


def _patient(r: _Rules, value: str | None, location: str, what: str, national: bool = True) -> tuple[str, str] | None:
    if not value:
        r.fail("XDS-MD-09", location, M("md.missing", attribute=what))
        return None
    cx = parse_cx(value)
    if cx is None:
        r.fail("XDS-MD-09", location, M("md.cx", attribute=what, value=value))
        return None
    if not national:
        return cx
    system = classify_system(cx[1])
    if not system.is_ins:
        r.fail("XDS-MD-09", location, M("md.not_ins", attribute=what, oid=cx[1]))
        return cx
    prod = production_problem(system)
    if prod is not None:
        r.fail(prod.rule, location, prod.message, prod.severity)
    for p in check_matricule(cx[0]):
        r.fail(p.rule, location, p.message, p.severity)
    return cx


def _times(r: _Rules, obj: RegistryObject, names: tuple[str, ...]) -> None:
    for name in names:
        for value in obj.slots.get(name, []):
            if not valid_dtm(value):
                r.fail("XDS-MD-07", obj.place(name), M("md.dtm", attribute=name, value=value))


def _coded(r: _Rules, obj: RegistryObject, schemes: dict[str, str]) -> None:
    for name, values in obj.classifications.items():
        for c in values:
            if not c.code or not c.scheme:
                r.fail("XDS-MD-05", c.location, M("md.coded", attribute=name, code=c.code or "-", scheme=c.scheme or "-"))
    for scheme, location in obj.unknown_schemes:
        r.fail("XDS-MD-06", location, M("md.scheme", scheme=scheme), Severity.WARNING)


def _submission_set(r: _Rules, ss: RegistryObject, profile: str, national: bool) -> tuple[str, str] | None:
    for name in ("uniqueId", "sourceId"):
        value = ss.identifiers.get(name)
        if not value:
            r.fail("XDS-MD-02", ss.location, M("md.missing", attribute=f"XDSSubmissionSet.{name}"))
        elif not _OID.match(value):
            r.fail("XDS-MD-02", ss.location, M("md.oid", attribute=f"XDSSubmissionSet.{name}", value=value))
    if not ss.slot("submissionTime"):
        r.fail("XDS-MD-02", ss.location, M("md.missing", attribute="XDSSubmissionSet.submissionTime"))
    if profile == "xds" and len(ss.coded("contentTypeCode")) != 1:
        r.fail("XDS-MD-02", ss.location, M("md.count", attribute="XDSSubmissionSet.contentTypeCode", count=len(ss.coded("contentTypeCode"))))
    _times(r, ss, ("submissionTime",))
    _coded(r, ss, SS_SCHEMES)
    return _patient(r, ss.identifiers.get("patientId"), ss.location, "XDSSubmissionSet.patientId", national)


def _document(r: _Rules, de: RegistryObject, profile: str, national: bool) -> tuple[str, str] | None:
    at = de.location
    if de.attributes.get("objectType") not in (DOCUMENT_ENTRY_TYPE, ON_DEMAND_ENTRY_TYPE):
        r.fail("XDS-MD-04", at, M("md.object_type", value=de.attributes.get("objectType") or "-"))
    if not de.attributes.get("mimeType"):
        r.fail("XDS-MD-04", at, M("md.missing", attribute="mimeType"))
    unique = de.identifiers.get("uniqueId")
    if not unique:
        r.fail("XDS-MD-04", at, M("md.missing", attribute="XDSDocumentEntry.uniqueId"))
    elif not _UNIQUE_ID.match(unique):
        r.fail("XDS-MD-04", at, M("md.unique_id", value=unique))
    for name in DE_SLOTS[profile]:
        if not de.slot(name):
            r.fail("XDS-MD-04", at, M("md.missing", attribute=name))
    for name in CODED:
        if len(de.coded(name)) != 1:
            r.fail("XDS-MD-04", at, M("md.count", attribute=name, count=len(de.coded(name))))
    if not de.coded("confidentialityCode"):
        r.fail("XDS-MD-04", at, M("md.missing", attribute="confidentialityCode"))
    if national and not de.title:  # CI-SIS: required (IHE: optional)
        r.fail("XDS-MD-04", at, M("md.missing", attribute="title"))
    if national and not de.authors:  # CI-SIS: required (IHE: R2)
        r.fail("XDS-MD-04", at, M("md.missing", attribute="author"))
    for a in de.authors:
        if not a.person and not a.institutions:
            r.fail("XDS-MD-04", a.location, M("md.author"))
    if de.slot("hash") and not _HASH.match(de.slot("hash")):
        r.fail("XDS-MD-08", de.place("hash"), M("md.hash", value=de.slot("hash")))
    if de.slot("size") and not de.slot("size").isdigit():
        r.fail("XDS-MD-08", de.place("size"), M("md.size", value=de.slot("size")))
    _times(r, de, ("creationTime", "serviceStartTime", "serviceStopTime"))
    _coded(r, de, DE_SCHEMES)
    return _patient(r, de.identifiers.get("patientId"), at, "XDSDocumentEntry.patientId", national)


def check_submission(sub: Submission, profile: str = "xds", *, national: bool = True) -> list[Problem]:
    """Every metadata rule for one ``SubmitObjectsRequest``: IHE's, and with ``national`` the
    CI-SIS's (patient identified by an INS, title and author required)."""
    r = _Rules()
    if len(sub.submission_sets) != 1:
        r.fail("XDS-MD-01", "/SubmitObjectsRequest", M("md.submission_sets", count=len(sub.submission_sets)))
    patients = {}
    for ss in sub.submission_sets:
        patients[ss.location] = _submission_set(r, ss, profile, national)
    # an archive carries documents; a registry submission may also add folders or associations
    # only (a document to a folder, a status change: ITI TF-3 4.1.7)
    if not sub.documents and (profile == "xdm" or not (sub.folders or sub.associations)):
        r.fail("XDS-MD-03", "/SubmitObjectsRequest", M("md.no_document"))
    for de in sub.documents:
        patients[de.location] = _document(r, de, profile, national)
    known = {p for p in patients.values() if p is not None}
    if len(known) > 1:
        r.fail("XDS-MD-09", "/SubmitObjectsRequest", M("md.patients", patients=", ".join(sorted(f"{i}^^^&{o}&ISO" for i, o in known))))
    for value, n in Counter(d.identifiers.get("uniqueId") for d in sub.documents if d.identifiers.get("uniqueId")).items():
        if n > 1:
            r.fail("XDS-MD-11", "/SubmitObjectsRequest", M("md.duplicate_unique_id", value=value, count=n))
    _associations(r, sub)
    return r.problems


def _associations(r: _Rules, sub: Submission) -> None:
    ss_ids = {s.id for s in sub.submission_sets}
    doc_ids = {d.id for d in sub.documents}
    folder_ids = {f.id for f in sub.folders}
    members = set()
    for a in sub.associations:
        if a.type not in KNOWN_ASSOCIATIONS:
            r.fail("XDS-MD-10", a.location, M("md.association_type", type=a.type), Severity.WARNING)
        if a.source and a.source == a.target:
            r.fail("XDS-MD-10", a.location, M("md.association_self", id=a.source))
        if a.documentation and a.type not in LIFECYCLE:
            r.fail("XDS-MD-10", a.location, M("md.association_documentation", type=a.type))
        if a.type == HAS_MEMBER:
            # from the submission set, or from a folder (this one's, or one the registry holds)
            if a.source not in ss_ids | folder_ids and not a.source.startswith("urn:uuid:"):
                r.fail("XDS-MD-10", a.location, M("md.member_source", source=a.source))
            if a.target in doc_ids and a.source in ss_ids:
                members.add(a.target)
            elif a.target not in doc_ids | folder_ids and not a.target.startswith("urn:uuid:") and \
                    a.target not in {x.id for x in sub.associations}:
                r.fail("XDS-MD-10", a.location, M("md.member_target", target=a.target))
        elif a.type in LIFECYCLE:
            if a.source not in doc_ids:
                r.fail("XDS-MD-10", a.location, M("md.rplc_source", source=a.source))
            if not a.target.startswith("urn:uuid:"):
                r.fail("XDS-MD-10", a.location, M("md.rplc_target", target=a.target))
    for de in sub.documents:
        if de.id not in members:
            r.fail("XDS-MD-10", de.location, M("md.not_member", id=de.id))
