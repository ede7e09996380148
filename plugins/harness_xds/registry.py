"""An XDS.b registry and repository: what was stored, and the IHE answers. The DMP simulator
plays it over SOAP (ITI-41/18/43/57), the PDSm stand-in over FHIR (ITI-65/67/68, MHD's
"grouping with an XDS Document Source", IHE MHD 2:3.65.4.1.3.1): one store behind both when
the target says PDSm fronts the DMP (:func:`share` / :func:`shared`).

ITI-41 provide and register (with RPLC replacement), ITI-18 stored queries (FindDocuments,
GetDocuments), ITI-43 retrieve, ITI-57 metadata update (availability status; a new version
of an entry's metadata, as the DMP does to hide a document from professionals). Errors are
answered as a ``RegistryErrorList`` with the IHE error codes (ITI TF-3 4.2.4).

It accepts what a real registry accepts and refuses what it refuses; it does not judge
conformity to the CI-SIS beyond that: the checks do, on the recorded exchange, so that a
vendor sees every finding rather than the first rejection.
"""
from __future__ import annotations

import copy
import hashlib
import threading
import uuid
from dataclasses import dataclass, field

from lxml import etree

from typing import Callable

from harness import UnsafeInput, catalogue, parse_xml
from harness_ins.identity import SystemClass, check_matricule, classify_system

from . import ebrim, rules

M = catalogue(__name__)

REPOSITORY_ID = "1.2.250.1.213.4.1.1.1.999"  # the simulator's repository (a test OID under the DMP's arc)
FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
LEAF = "LeafClass"


@dataclass
class Stored:
    entry_uuid: str
    unique_id: str
    patient: str
    status: str
    element: etree._Element  # the ExtrinsicObject as the registry holds it
    data: bytes | None  # None: registered only (ITI-42), the document is in another repository
    version: int = 1
    hash: str = ""
    size: str = ""


@dataclass
class Package:
    """A submission set as the registry holds it (ITI-66 finds them)."""

    entry_uuid: str
    unique_id: str
    patient: str
    element: etree._Element  # the RegistryPackage
    members: list[str]  # entryUUIDs of the document entries it submitted
    source_id: str = ""


@dataclass
class Folder:
    entry_uuid: str
    unique_id: str
    patient: str


@dataclass
class Outcome:
    """A transaction's answer and what it found (recorded with the exchange)."""

    body: etree._Element
    status: str  # Success, PartialSuccess, Failure
    errors: list[tuple[str, str]] = field(default_factory=list)  # (IHE code, context)
    documents: list[tuple[str, bytes]] = field(default_factory=list)  # (entry id, bytes) submitted or returned
    attachments: list[tuple[str, bytes, str]] = field(default_factory=list)
    facts: dict = field(default_factory=dict)


def _registry_response(errors: list[tuple[str, str]], tag: str = f"{{{ebrim.RS}}}RegistryResponse") -> etree._Element:
    resp = etree.Element(tag, nsmap={"rs": ebrim.RS})
    resp.set("status", ebrim.FAILURE if errors else ebrim.SUCCESS)
    _error_list(resp, errors)
    return resp


def _error_list(parent: etree._Element, errors: list[tuple[str, str]]) -> None:
    if not errors:
        return
    el = etree.SubElement(parent, f"{{{ebrim.RS}}}RegistryErrorList", highestSeverity=ebrim.ERROR_SEVERITY)
    for code, context in errors:
        etree.SubElement(el, f"{{{ebrim.RS}}}RegistryError", errorCode=code, codeContext=context, severity=ebrim.ERROR_SEVERITY, location="")


def _text(message) -> str:
    return message.render("fr")


def is_dmp_test_identity(patient: str) -> bool:
    """DMP-REG-01: the DMP knows a patient by the INS (CI-SIS, volet partage de documents de
    santé: ``XDSDocumentEntry.patientId`` is the INS); on a test platform only the test and
    demo INS OIDs, with a valid key, are patients it holds."""
    cx = rules.parse_cx(patient)
    if cx is None:
        return False
    system = classify_system(cx[1])
    return system.is_ins and system.cls is not SystemClass.PRODUCTION and not check_matricule(cx[0])


class Registry:
    """An XDS.b document registry and repository, as ITI TF-2b/TF-3 describe them.

    ``profile`` ``"dmp"`` adds the DMP's restrictions (each with its rule id and source): the
    patients it knows are INS of the test platform (DMP-REG-01), the documents it stores are
    XML (DMP-REG-02: CDA R2, CI-SIS), and the CI-SIS metadata rules apply. ``"ihe"`` is a
    plain XDS.b registry whose patients are those fed to it (:meth:`feed`), as the NIST XDS
    toolkit expects (``bench/nist_xds.py``)."""

    def __init__(self, max_document: int, *, profile: str = "dmp", patients: tuple[str, ...] = ()) -> None:
        self.max_document = max_document
        self.profile = profile
        self.lock = threading.Lock()
        self.by_uuid: dict[str, Stored] = {}
        self.folders: dict[str, Folder] = {}
        self.submission_sets: dict[str, str] = {}  # uniqueId -> entryUUID
        self.packages: dict[str, Package] = {}  # entryUUID -> the submission set
        self.associations: dict[str, tuple[str, str, str]] = {}  # entryUUID -> (type, source, target)
        self.patients: set[str] = set(patients)

    def feed(self, patient: str) -> None:
        """A patient identity feed (ITI-8/ITI-44 in IHE terms): the registry now knows it."""
        with self.lock:
            self.patients.add(patient)

    def knows(self, patient: str) -> bool:
        """The patient identity source: the patients declared or fed when there are any;
        otherwise, for the DMP, every valid test INS (DMP-REG-01)."""
        if self.patients or self.profile != "dmp":
            return patient in self.patients
        return is_dmp_test_identity(patient)

    def _by_unique(self, unique_id: str) -> Stored | None:
        return next((s for s in self.by_uuid.values() if s.unique_id == unique_id), None)

    # -- ITI-41 and ITI-42 -----------------------------------------------------------------

    def provide_set(self, request: etree._Element, docs: dict[str, bytes]) -> Outcome:
        """ITI-41: the repository keeps the documents, then registers them (ITI-42 inside)."""
        sub = ebrim.read_submission(request)
        errors: list[tuple[str, str]] = []
        for doc_id, data in docs.items():
            if len(data) > self.max_document:
                errors.append(("XDSRepositoryError", _text(M("reg.too_large", id=doc_id, size=len(data), limit=self.max_document))))
        entries = {d.id: d for d in sub.documents}
        for entry_id in entries:
            if entry_id not in docs:
                errors.append(("XDSMissingDocument", _text(M("reg.missing_document", id=entry_id))))
        for doc_id in docs:
            if doc_id not in entries:
                errors.append(("XDSMissingDocumentMetadata", _text(M("reg.missing_metadata", id=doc_id))))
        for entry in sub.documents:
            data = docs.get(entry.id)
            if data is None:
                continue
            for slot, actual in (("hash", hashlib.sha1(data).hexdigest()), ("size", str(len(data)))):
                if entry.slot(slot) and entry.slot(slot).lower() != actual:
                    errors.append(("XDSRepositoryMetadataError", _text(M("reg.slot_mismatch", id=entry.id, slot=slot, said=entry.slot(slot), actual=actual))))
            if self.profile == "dmp":  # DMP-REG-02: the DMP stores CDA R2 documents (CI-SIS)
                try:
                    parse_xml(data, source=entry.id)
                except UnsafeInput as exc:
                    errors.append(("XDSRepositoryError", _text(M("reg.unreadable_document", id=entry.id, reason=exc.detail))))
        outcome = self._register(request, sub, docs, errors)
        outcome.documents = list(docs.items())
        return outcome

    def register(self, request: etree._Element) -> Outcome:
        """ITI-42 register document set-b: metadata only (hash, size and repository given by
        the source). The DMP simulator offers ITI-41 only; this is what the NIST test plans
        exercise, and what ITI-41 does once the repository has the documents."""
        return self._register(request, ebrim.read_submission(request), None, [])

    def _register(self, request: etree._Element, sub: ebrim.Submission, docs: dict[str, bytes] | None,
                  errors: list[tuple[str, str]]) -> Outcome:
        national = self.profile == "dmp"
        problems = [p for p in rules.check_submission(sub, "xds" if docs is not None else "register", national=national)
                    if p.severity.fails and not (p.rule == "XDS-MD-09" and p.location == "/SubmitObjectsRequest")]
        facts: dict = {"metadata_problems": [p.rule for p in problems]}
        errors = errors + [("XDSRegistryMetadataError", f"{p.rule} {p.location} : {_text(p.message)}") for p in problems]
        patient = sub.submission_sets[0].identifiers.get("patientId", "") if sub.submission_sets else ""
        with self.lock:
            self._patients(sub, patient, errors)
            self._identifiers(sub, docs, errors)
            deprecate = self._lifecycle(sub, patient, errors)
            if errors:
                return Outcome(_registry_response(errors), "Failure", errors, facts=facts)
            stored = self._store(request, sub, docs, patient)
            for target in deprecate:
                self.by_uuid[target].status = ebrim.DEPRECATED
                self.by_uuid[target].element.set("status", ebrim.DEPRECATED)
        facts.update({"stored": stored, "replaced": deprecate, "patient": patient or None,
                      "submitted": [{"unique": e.identifiers.get("uniqueId", ""), "sha256": hashlib.sha256(docs[e.id]).hexdigest()}
                                    for e in sub.documents if docs is not None and e.id in docs]})
        return Outcome(_registry_response([]), "Success", facts=facts)

    def _patients(self, sub: ebrim.Submission, patient: str, errors: list[tuple[str, str]]) -> None:
        """ITI TF-2b 3.42.4.1.3: the submission set's patient is known (the patient identity
        source: fed to it, or DMP-REG-01), every entry and folder is about it."""
        if patient and rules.parse_cx(patient) is not None and not self.knows(patient):
            errors.append(("XDSUnknownPatientId", _text(M("reg.unknown_patient", patient=patient))))
        for obj in sub.documents + sub.folders:
            other = obj.identifiers.get("patientId", "")
            if patient and other and other != patient:
                errors.append(("XDSPatientIdDoesNotMatch", _text(M("reg.patient_mismatch_ss", id=obj.id, patient=other, expected=patient))))
        for a in sub.associations:
            if a.type != ebrim.HAS_MEMBER:
                continue
            for ref in (a.source, a.target):
                held = self.by_uuid.get(ref) or self.folders.get(ref)
                if held is not None and patient and held.patient != patient:
                    errors.append(("XDSPatientIdDoesNotMatch", _text(M("reg.patient_mismatch_ss", id=ref, patient=held.patient, expected=patient))))

    def _identifiers(self, sub: ebrim.Submission, docs: dict[str, bytes] | None, errors: list[tuple[str, str]]) -> None:
        """entryUUIDs are new (ITI TF-3 4.2.3: a registry object's id is unique; a submission
        with an id the registry holds is refused, never an overwrite); a uniqueId already held
        is the same document only with the same hash and size (ITI TF-3 4.2.4 error codes)."""
        objects = [o.id for o in sub.submission_sets + sub.documents + sub.folders] + [a.id for a in sub.associations]
        for oid in objects:
            if oid.startswith("urn:uuid:") and (oid in self.by_uuid or oid in self.folders or oid in self.associations
                                                or oid in self.submission_sets.values()):
                errors.append(("XDSRegistryMetadataError", _text(M("reg.uuid_reused", id=oid))))
        for ss in sub.submission_sets:
            if ss.identifiers.get("uniqueId") in self.submission_sets:
                errors.append(("XDSDuplicateUniqueIdInRegistry", _text(M("reg.duplicate", unique=ss.identifiers["uniqueId"]))))
        for f in sub.folders:
            if any(h.unique_id == f.identifiers.get("uniqueId") for h in self.folders.values()):
                errors.append(("XDSDuplicateUniqueIdInRegistry", _text(M("reg.duplicate", unique=f.identifiers["uniqueId"]))))
        for entry in sub.documents:
            unique = entry.identifiers.get("uniqueId", "")
            known = self._by_unique(unique)
            if known is None:
                continue
            data = (docs or {}).get(entry.id)
            said_hash = hashlib.sha1(data).hexdigest() if data is not None else (entry.slot("hash") or "").lower()
            said_size = str(len(data)) if data is not None else (entry.slot("size") or "")
            if said_hash != known.hash:
                errors.append(("XDSNonIdenticalHash", _text(M("reg.non_identical", unique=unique))))
            elif said_size and known.size and said_size != known.size:
                errors.append(("XDSNonIdenticalSize", _text(M("reg.non_identical", unique=unique))))
            # the same document submitted again (same uniqueId, hash and size) is another entry

    def _lifecycle(self, sub: ebrim.Submission, patient: str, errors: list[tuple[str, str]]) -> list[str]:
        """RPLC, APND, XFRM and XFRM_RPLC (ITI TF-3 4.2.2): the target is an entry the registry
        holds (else XDSUnresolvedReferenceException), still Approved (else
        XDSRegistryDeprecatedDocumentError), of the same patient (else XDSPatientIdDoesNotMatch).
        Returns the entries a replacement deprecates."""
        deprecate = []
        for a in sub.associations:
            if a.type not in rules.LIFECYCLE:
                continue
            target = self.by_uuid.get(a.target)
            source = sub.document(a.source)
            if target is None:
                errors.append(("XDSUnresolvedReferenceException", _text(M("reg.unresolved", target=a.target))))
            elif target.status != ebrim.APPROVED:
                errors.append(("XDSRegistryDeprecatedDocumentError", _text(M("reg.not_approved", target=a.target))))
            elif source is not None and source.identifiers.get("patientId", patient) != target.patient:
                errors.append(("XDSPatientIdDoesNotMatch", _text(M("reg.patient_mismatch", target=a.target))))
            elif a.type in (ebrim.RPLC, "urn:ihe:iti:2007:AssociationType:XFRM_RPLC"):
                deprecate.append(a.target)
        return deprecate

    def _store(self, request: etree._Element, sub: ebrim.Submission, docs: dict[str, bytes] | None, patient: str) -> list[str]:
        stored = []
        elements = {el.get("id"): el for el in request.iter() if isinstance(el.tag, str) and ebrim.local(el) == "ExtrinsicObject"}
        ids = {}
        for obj in sub.documents + sub.folders + sub.submission_sets:
            ids[obj.id] = obj.id if obj.id.startswith("urn:uuid:") else f"urn:uuid:{uuid.uuid4()}"
        for entry in sub.documents:
            el = elements[entry.id]
            entry_uuid = ids[entry.id]
            held = copy.deepcopy(el)
            held.set("id", entry_uuid)
            held.set("lid", entry_uuid)
            held.set("status", ebrim.APPROVED)
            data = docs.get(entry.id) if docs is not None else None
            digest = hashlib.sha1(data).hexdigest() if data is not None else (entry.slot("hash") or "").lower()
            size = str(len(data)) if data is not None else (entry.slot("size") or "")
            if docs is not None:
                _add_slot(held, "repositoryUniqueId", REPOSITORY_ID)
                for slot, value in (("hash", digest), ("size", size)):
                    if entry.slot(slot) is None:
                        _add_slot(held, slot, value)
            self.by_uuid[entry_uuid] = Stored(entry_uuid, entry.identifiers.get("uniqueId", ""), entry.identifiers.get("patientId", ""),
                                              ebrim.APPROVED, held, data, hash=digest, size=size)
            stored.append(entry_uuid)
        for f in sub.folders:
            self.folders[ids[f.id]] = Folder(ids[f.id], f.identifiers.get("uniqueId", ""), f.identifiers.get("patientId", patient))
        packages = {el.get("id"): el for el in request.iter() if isinstance(el.tag, str) and ebrim.local(el) == "RegistryPackage"}
        for ss in sub.submission_sets:
            self.submission_sets[ss.identifiers.get("uniqueId", ids[ss.id])] = ids[ss.id]
            held = copy.deepcopy(packages[ss.id]) if ss.id in packages else etree.Element(f"{{{ebrim.RIM}}}RegistryPackage")
            held.set("id", ids[ss.id])
            held.set("status", ebrim.APPROVED)
            members = [ids.get(a.target, a.target) for a in sub.associations if a.type == ebrim.HAS_MEMBER and a.source == ss.id]
            self.packages[ids[ss.id]] = Package(ids[ss.id], ss.identifiers.get("uniqueId", ""), ss.identifiers.get("patientId", patient), held,
                                                [m for m in members if m in self.by_uuid], ss.identifiers.get("sourceId", ""))
        for a in sub.associations:
            a_id = a.id if a.id.startswith("urn:uuid:") else f"urn:uuid:{uuid.uuid4()}"
            self.associations[a_id] = (a.type, ids.get(a.source, a.source), ids.get(a.target, a.target))
        return stored

    # -- ITI-18 ---------------------------------------------------------------------------

    def query(self, body: etree._Element) -> Outcome:
        """ITI-18 (``body``: the ``AdhocQueryRequest``)."""
        q = body.find(f"{{{ebrim.RIM}}}AdhocQuery")
        options = body.find(f"{{{ebrim.QUERY}}}ResponseOption")
        return_type = options.get("returnType", "ObjectRef") if options is not None else "ObjectRef"
        resp = etree.Element(f"{{{ebrim.QUERY}}}AdhocQueryResponse", nsmap={"query": ebrim.QUERY, "rim": ebrim.RIM, "rs": ebrim.RS})
        if q is None:
            return self._query_failure(resp, [("XDSRegistryError", _text(M("reg.no_query")))])
        slots = {k: _query_values(vs) for k, vs in ebrim.slots(q).items()}
        found: list[Stored]
        with self.lock:
            if q.get("id") == FIND_DOCUMENTS:
                patient = (slots.get("$XDSDocumentEntryPatientId") or [""])[0]
                statuses = slots.get("$XDSDocumentEntryStatus") or []
                if not patient or not statuses:
                    return self._query_failure(resp, [("XDSStoredQueryParamNumber", _text(M("reg.query_params")))])
                found = [s for s in self.by_uuid.values() if s.patient == patient and s.status in statuses]
            elif q.get("id") == GET_DOCUMENTS:
                uuids, uniques = slots.get("$XDSDocumentEntryEntryUUID") or [], slots.get("$XDSDocumentEntryUniqueId") or []
                if not uuids and not uniques:
                    return self._query_failure(resp, [("XDSStoredQueryParamNumber", _text(M("reg.query_params")))])
                found = [s for s in self.by_uuid.values() if s.entry_uuid in uuids or s.unique_id in uniques]
            else:
                return self._query_failure(resp, [("XDSUnknownStoredQuery", _text(M("reg.unknown_query", id=q.get("id") or "-")))])
            resp.set("status", ebrim.SUCCESS)
            rol = etree.SubElement(resp, f"{{{ebrim.RIM}}}RegistryObjectList")
            for s in found:
                if return_type == LEAF:
                    rol.append(copy.deepcopy(s.element))
                else:
                    etree.SubElement(rol, f"{{{ebrim.RIM}}}ObjectRef", id=s.entry_uuid)
        patient = (slots.get("$XDSDocumentEntryPatientId") or [None])[0]
        return Outcome(resp, "Success", facts={"query": q.get("id"), "found": [s.entry_uuid for s in found], "patient": patient})

    def _query_failure(self, resp: etree._Element, errors: list[tuple[str, str]]) -> Outcome:
        resp.set("status", ebrim.FAILURE)
        _error_list(resp, errors)
        return Outcome(resp, "Failure", errors)

    # -- ITI-43 ---------------------------------------------------------------------------

    def retrieve(self, body: etree._Element, include: Callable[[etree._Element, str], None]) -> Outcome:
        """ITI-43 (``body``: the ``RetrieveDocumentSetRequest``); ``include`` puts a reference
        to an attachment (its content id) in a ``Document`` element (XOP for SOAP/MTOM)."""
        resp = etree.Element(f"{{{ebrim.XDSB}}}RetrieveDocumentSetResponse", nsmap={"xdsb": ebrim.XDSB, "rs": ebrim.RS})
        rr = etree.SubElement(resp, f"{{{ebrim.RS}}}RegistryResponse")
        errors: list[tuple[str, str]] = []
        out = Outcome(resp, "Success")
        requests = body.findall(f"{{{ebrim.XDSB}}}DocumentRequest")
        if not requests:
            errors.append(("XDSRepositoryError", _text(M("reg.no_document_request"))))
        with self.lock:
            for n, dr in enumerate(requests, 1):
                repo = (dr.findtext(f"{{{ebrim.XDSB}}}RepositoryUniqueId") or "").strip()
                unique = (dr.findtext(f"{{{ebrim.XDSB}}}DocumentUniqueId") or "").strip()
                stored = self._by_unique(unique)
                if repo != REPOSITORY_ID:
                    errors.append(("XDSUnknownRepositoryId", _text(M("reg.unknown_repository", repository=repo))))
                elif stored is None or stored.data is None:
                    errors.append(("XDSDocumentUniqueIdError", _text(M("reg.unknown_document", unique=unique))))
                else:
                    cid = f"doc{n}@dmp-simulator"
                    d = etree.SubElement(resp, f"{{{ebrim.XDSB}}}DocumentResponse")
                    etree.SubElement(d, f"{{{ebrim.XDSB}}}RepositoryUniqueId").text = REPOSITORY_ID
                    etree.SubElement(d, f"{{{ebrim.XDSB}}}DocumentUniqueId").text = unique
                    etree.SubElement(d, f"{{{ebrim.XDSB}}}mimeType").text = stored.element.get("mimeType") or "text/xml"
                    include(etree.SubElement(d, f"{{{ebrim.XDSB}}}Document"), cid)
                    out.attachments.append((cid, stored.data or b"", "application/octet-stream"))
                    out.documents.append((unique, stored.data or b""))
                    out.facts.setdefault("returned", {})[unique] = hashlib.sha256(stored.data or b"").hexdigest()
        found = len(out.documents)
        rr.set("status", ebrim.SUCCESS if not errors else (ebrim.PARTIAL if found else ebrim.FAILURE))
        _error_list(rr, errors)
        out.errors, out.status = errors, ("Success" if not errors else "PartialSuccess" if found else "Failure")
        return out

    # -- ITI-57 ---------------------------------------------------------------------------

    def update(self, body: etree._Element) -> Outcome:
        """ITI-57 (``body``: the ``SubmitObjectsRequest``)."""
        sub = ebrim.read_submission(body)
        errors: list[tuple[str, str]] = []
        changes = []
        if len(sub.submission_sets) != 1:
            errors.append(("XDSRegistryMetadataError", _text(M("reg.update_submission_set"))))
        with self.lock:
            for a in sub.associations:
                if a.type != ebrim.UPDATE_STATUS:
                    continue
                target = self.by_uuid.get(a.target)
                new = (a.slots.get("NewStatus") or [""])[0]
                if target is None:
                    errors.append(("XDSUnresolvedReferenceException", _text(M("reg.unresolved", target=a.target))))
                elif new not in (ebrim.APPROVED, ebrim.DEPRECATED):
                    errors.append(("XDSMetadataUpdateError", _text(M("reg.status", status=new or "-"))))
                else:
                    changes.append(("status", target, new))
            for entry in sub.documents:
                lid = entry.attributes.get("lid", "")
                target = self.by_uuid.get(lid)
                if target is None:
                    errors.append(("XDSMetadataUpdateError", _text(M("reg.unresolved", target=lid or entry.id))))
                elif entry.slot("PreviousVersion") != str(target.version):
                    errors.append(("XDSMetadataVersionError", _text(M("reg.version", said=entry.slot("PreviousVersion") or "-", actual=target.version))))
                else:
                    changes.append(("metadata", target, entry))
            if not changes and not errors:
                errors.append(("XDSMetadataUpdateError", _text(M("reg.nothing_to_update"))))
            if errors:
                return Outcome(_registry_response(errors), "Failure", errors)
            facts = []
            for kind, target, value in changes:
                if kind == "status":
                    target.status = value
                    target.element.set("status", value)
                    facts.append({"entry": target.entry_uuid, "status": value})
                else:
                    target.version += 1
                    codes = [c.code for c in value.coded("confidentialityCode")]
                    _replace_confidentiality(target.element, value)
                    facts.append({"entry": target.entry_uuid, "version": target.version, "confidentiality": codes})
        return Outcome(_registry_response([]), "Success", facts={"updated": facts})


    # -- an update that is not ITI-57's: PDSm's flow 03 (a FHIR patch) -----------------------

    def amend(self, entry_uuid: str, *, status: str | None = None, confidentiality: list[ebrim.Coded] | None = None) -> int:
        """A new version of a held entry's metadata: its availability status (``Approved``,
        ``Deprecated``) and/or its confidentiality codes, as an ITI-57 metadata update would
        leave it (the PDSm stand-in's PATCH). The entry's new version; KeyError when unknown."""
        with self.lock:
            held = self.by_uuid[entry_uuid]
            if status is not None:
                held.status = status
                held.element.set("status", status)
            if confidentiality is not None:
                _replace_confidentiality(held.element, ebrim.RegistryObject(entry_uuid, "", classifications={"confidentialityCode": confidentiality}))
            held.version += 1
            return held.version


def _query_values(values: list[str]) -> list[str]:
    """Stored-query slot values: ``'a'`` or ``('a','b')`` -> ``["a", "b"]``."""
    out = []
    for value in values:
        value = value.strip()
        if value.startswith("(") and value.endswith(")"):
            value = value[1:-1]
        out += [item.strip().strip("'") for item in value.split(",") if item.strip()]
    return out


def _add_slot(el: etree._Element, name: str, value: str) -> None:
    slot = etree.Element(f"{{{ebrim.RIM}}}Slot", name=name)
    etree.SubElement(etree.SubElement(slot, f"{{{ebrim.RIM}}}ValueList"), f"{{{ebrim.RIM}}}Value").text = value
    el.insert(0, slot)


def _replace_confidentiality(held: etree._Element, entry: ebrim.RegistryObject) -> None:
    scheme = ebrim.DE_SCHEMES["confidentialityCode"]
    for cl in [c for c in held if ebrim.local(c) == "Classification" and c.get("classificationScheme") == scheme]:
        held.remove(cl)
    for n, c in enumerate(entry.coded("confidentialityCode"), 1):
        cl = etree.SubElement(held, f"{{{ebrim.RIM}}}Classification", id=f"{held.get('id')}-conf{n}", classificationScheme=scheme,
                              classifiedObject=held.get("id"), nodeRepresentation=c.code)
        s = etree.SubElement(cl, f"{{{ebrim.RIM}}}Slot", name="codingScheme")
        etree.SubElement(etree.SubElement(s, f"{{{ebrim.RIM}}}ValueList"), f"{{{ebrim.RIM}}}Value").text = c.scheme


# -- one store behind several simulators of a run --------------------------------------------

_SHARED: dict[str, Registry] = {}
_SHARED_LOCK = threading.Lock()


def share(name: str, registry: Registry) -> None:
    """``registry`` is the store of the service ``name`` of this run (the DMP simulator says
    so), for another simulator that fronts it (PDSm before the DMP)."""
    with _SHARED_LOCK:
        _SHARED[name] = registry


def unshare(name: str, registry: Registry) -> None:
    with _SHARED_LOCK:
        if _SHARED.get(name) is registry:
            del _SHARED[name]


def shared(name: str) -> Registry | None:
    """The store of the service ``name``, when it runs in this process."""
    with _SHARED_LOCK:
        return _SHARED.get(name)
