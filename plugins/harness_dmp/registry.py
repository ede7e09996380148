"""The registry and repository the DMP simulator plays: what was stored, and the IHE answers.

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

from harness import UnsafeInput, catalogue, parse_xml
from harness_ins.identity import SystemClass, check_matricule, classify_system
from harness_xds import ebrim, rules

from .soap import Request, SoapError, include

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
    data: bytes
    version: int = 1


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


class Registry:
    def __init__(self, max_document: int) -> None:
        self.max_document = max_document
        self.lock = threading.Lock()
        self.by_uuid: dict[str, Stored] = {}

    def _by_unique(self, unique_id: str) -> Stored | None:
        return next((s for s in self.by_uuid.values() if s.unique_id == unique_id), None)

    # -- ITI-41 ---------------------------------------------------------------------------

    def provide(self, req: Request) -> Outcome:
        body = req.body
        request = ebrim.find_request(body)
        if request is None:
            raise SoapError("Sender", "XDSRegistryMetadataError", M("reg.no_submit_objects"))
        sub = ebrim.read_submission(request)
        docs: dict[str, bytes] = {}
        errors: list[tuple[str, str]] = []
        for el in body:
            if isinstance(el.tag, str) and ebrim.local(el) == "Document":
                data = req.content(el)
                if len(data) > self.max_document:
                    errors.append(("XDSRepositoryError", _text(M("reg.too_large", id=el.get("id"), size=len(data), limit=self.max_document))))
                docs[el.get("id") or ""] = data
        outcome = Outcome(_registry_response([]), "Success", documents=list(docs.items()))
        failing = [p for p in rules.check_submission(sub) if p.severity.fails]
        outcome.facts["metadata_problems"] = [p.rule for p in failing]
        errors += [("XDSRegistryMetadataError", f"{p.rule} {p.location} : {_text(p.message)}") for p in failing]
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
            try:
                parse_xml(data, source=entry.id)
            except UnsafeInput as exc:
                errors.append(("XDSRepositoryError", _text(M("reg.unreadable_document", id=entry.id, reason=exc.detail))))
            patient = entry.identifiers.get("patientId", "")
            cx = rules.parse_cx(patient)
            if cx is not None:
                system = classify_system(cx[1])
                if not system.is_ins or system.cls is SystemClass.PRODUCTION or check_matricule(cx[0]):
                    errors.append(("XDSUnknownPatientId", _text(M("reg.unknown_patient", patient=patient))))
        with self.lock:
            replaced = self._replacements(sub, errors)
            for entry in sub.documents:
                unique = entry.identifiers.get("uniqueId", "")
                known = self._by_unique(unique)
                if known is not None and entry.id in docs and hashlib.sha1(known.data).digest() != hashlib.sha1(docs[entry.id]).digest():
                    errors.append(("XDSNonIdenticalHash", _text(M("reg.non_identical", unique=unique))))
                elif known is not None:
                    errors.append(("XDSDuplicateUniqueIdInRegistry", _text(M("reg.duplicate", unique=unique))))
            if errors:
                return Outcome(_registry_response(errors), "Failure", errors, list(docs.items()), facts=outcome.facts)
            stored = []
            elements = {el.get("id"): el for el in request.iter() if isinstance(el.tag, str) and ebrim.local(el) == "ExtrinsicObject"}
            for entry in sub.documents:
                el = elements[entry.id]
                entry_uuid = entry.id if entry.id.startswith("urn:uuid:") else f"urn:uuid:{uuid.uuid4()}"
                held = copy.deepcopy(el)
                held.set("id", entry_uuid)
                held.set("lid", entry_uuid)
                held.set("status", ebrim.APPROVED)
                _add_slot(held, "repositoryUniqueId", REPOSITORY_ID)
                for slot, value in (("hash", hashlib.sha1(docs[entry.id]).hexdigest()), ("size", str(len(docs[entry.id])))):
                    if entry.slot(slot) is None:
                        _add_slot(held, slot, value)
                self.by_uuid[entry_uuid] = Stored(entry_uuid, entry.identifiers.get("uniqueId", ""), entry.identifiers.get("patientId", ""),
                                                  ebrim.APPROVED, held, docs[entry.id])
                stored.append(entry_uuid)
            for target in replaced:
                self.by_uuid[target].status = ebrim.DEPRECATED
                self.by_uuid[target].element.set("status", ebrim.DEPRECATED)
        outcome.facts.update({"stored": stored, "replaced": replaced, "patient": sub.submission_sets[0].identifiers.get("patientId") if sub.submission_sets else None,
                              "submitted": [{"unique": e.identifiers.get("uniqueId", ""), "sha256": hashlib.sha256(docs[e.id]).hexdigest()}
                                            for e in sub.documents if e.id in docs]})
        return outcome

    def _replacements(self, sub: ebrim.Submission, errors: list[tuple[str, str]]) -> list[str]:
        replaced = []
        for a in sub.associations:
            if a.type != ebrim.RPLC:
                continue
            target = self.by_uuid.get(a.target)
            source = sub.document(a.source)
            if target is None:
                errors.append(("XDSUnresolvedReferenceException", _text(M("reg.unresolved", target=a.target))))
            elif target.status != ebrim.APPROVED:
                errors.append(("XDSReplaceFailed", _text(M("reg.not_approved", target=a.target))))
            elif source is not None and source.identifiers.get("patientId") != target.patient:
                errors.append(("XDSPatientIdDoesNotMatch", _text(M("reg.patient_mismatch", target=a.target))))
            else:
                replaced.append(a.target)
        return replaced

    # -- ITI-18 ---------------------------------------------------------------------------

    def query(self, req: Request) -> Outcome:
        q = req.body.find(f"{{{ebrim.RIM}}}AdhocQuery")
        options = req.body.find(f"{{{ebrim.QUERY}}}ResponseOption")
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

    def retrieve(self, req: Request) -> Outcome:
        resp = etree.Element(f"{{{ebrim.XDSB}}}RetrieveDocumentSetResponse", nsmap={"xdsb": ebrim.XDSB, "rs": ebrim.RS})
        rr = etree.SubElement(resp, f"{{{ebrim.RS}}}RegistryResponse")
        errors: list[tuple[str, str]] = []
        out = Outcome(resp, "Success")
        requests = req.body.findall(f"{{{ebrim.XDSB}}}DocumentRequest")
        if not requests:
            errors.append(("XDSRepositoryError", _text(M("reg.no_document_request"))))
        with self.lock:
            for n, dr in enumerate(requests, 1):
                repo = (dr.findtext(f"{{{ebrim.XDSB}}}RepositoryUniqueId") or "").strip()
                unique = (dr.findtext(f"{{{ebrim.XDSB}}}DocumentUniqueId") or "").strip()
                stored = self._by_unique(unique)
                if repo != REPOSITORY_ID:
                    errors.append(("XDSUnknownRepositoryId", _text(M("reg.unknown_repository", repository=repo))))
                elif stored is None:
                    errors.append(("XDSDocumentUniqueIdError", _text(M("reg.unknown_document", unique=unique))))
                else:
                    cid = f"doc{n}@dmp-simulator"
                    d = etree.SubElement(resp, f"{{{ebrim.XDSB}}}DocumentResponse")
                    etree.SubElement(d, f"{{{ebrim.XDSB}}}RepositoryUniqueId").text = REPOSITORY_ID
                    etree.SubElement(d, f"{{{ebrim.XDSB}}}DocumentUniqueId").text = unique
                    etree.SubElement(d, f"{{{ebrim.XDSB}}}mimeType").text = stored.element.get("mimeType") or "text/xml"
                    include(etree.SubElement(d, f"{{{ebrim.XDSB}}}Document"), cid)
                    out.attachments.append((cid, stored.data, "application/octet-stream"))
                    out.documents.append((unique, stored.data))
                    out.facts.setdefault("returned", {})[unique] = hashlib.sha256(stored.data).hexdigest()
        found = len(out.documents)
        rr.set("status", ebrim.SUCCESS if not errors else (ebrim.PARTIAL if found else ebrim.FAILURE))
        _error_list(rr, errors)
        out.errors, out.status = errors, ("Success" if not errors else "PartialSuccess" if found else "Failure")
        return out

    # -- ITI-57 ---------------------------------------------------------------------------

    def update(self, req: Request) -> Outcome:
        sub = ebrim.read_submission(req.body)
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

