"""The PDSm stand-in: FHIR document sharing on loopback (IHE MHD 4.2 Document Recipient and
Document Responder, as the ANS guide "Partage de Documents de Santé en mobilité" (PDSm
3.1.1) profiles them), over HTTPS, every exchange recorded.

Built on the services kit (:class:`harness.HttpService`: bounds, journal, clean stop; a
server certificate of the core's test PKI). The transactions, each with its PDSm flow:

- **ITI-65 Provide Document Bundle** (flows 01/02): ``POST [base]`` a ``transaction``
  Bundle, JSON or XML (MHD: the recipient accepts both). Validated in this order, each
  failure answered with an OperationOutcome and nothing stored (MHD: "process the bundle
  atomically"): FHIR structure (fhir.resources, R4B models: the same Bundle,
  DocumentReference, List and Binary as R4), the rules of MHD's ProvideBundle and PDSm's
  profiles (:func:`harness_xds.mhd.read_provide`), then the XDS registry behind it, which
  applies the XDS metadata rules and the registry's own (known patient, unique ids, a
  replaced document that exists: MHD's "grouping with an XDS Document Source"). Success: 200
  and a ``transaction-response`` Bundle, one entry per request entry, in order, ``201
  Created`` with a ``location`` (ITI-65 2:3.65.4.2.2). Folders are not kept: the answer says
  ``PartialFolderContentNotProcessed`` (allowed by 2:3.65.4.1.3).
- **ITI-67 Find Document References** (flows 05b/06b): ``GET [base]DocumentReference?...``
  or ``POST [base]DocumentReference/_search``: ``patient.identifier`` (or ``patient``) and
  ``status`` required (MHD; PDSm's note), ``identifier``, ``type``, ``category``, ``format``,
  ``setting``, ``facility``, ``security-label``, ``event``, ``creation`` and ``date`` with
  ``ge``/``le``/``gt``/``lt``/``eq``, ``_count`` and paging links. A parameter it does not
  support is ignored, said in an OperationOutcome of the searchset (FHIR's lenient search).
- **ITI-68 Retrieve Document** (flows 07/08): ``GET`` the attachment's URL: the document's
  bytes in its MIME type, or a Binary resource when the client asks for FHIR.
- **ITI-66 Find Document Lists**: ``GET [base]List?...`` (submission sets).
- reads: ``DocumentReference/[id]``, ``List/[id]``; ``metadata`` (CapabilityStatement).

Behind it, an XDS registry (:mod:`harness_xds.registry`): its own, or, with ``store`` naming
the DMP service of the same run, the DMP simulator's (PDSm fronts the DMP): a document fed by
ITI-41 is found by ITI-67 and one published by ITI-65 by ITI-18.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from harness import ConnectionBounds, Exchange, HttpService, Request, Response, UnsafeInput, catalogue, parse_json, parse_xml, pki
from harness_xds import ebrim, mhd, registry

M = catalogue(__name__)

FHIR_JSON, FHIR_XML = "application/fhir+json", "application/fhir+xml"
JSON_TYPES = (FHIR_JSON, "application/json")
XML_TYPES = (FHIR_XML, "application/xml", "text/xml")
MAX_REQUEST = 64 * 1024 * 1024  # an ITI-65 request: documents in base64 (a 10 MB document is 13.4 MB of it)
MAX_DOCUMENT = 32 * 1024 * 1024
MAX_JSON_DEPTH = 64  # a FHIR bundle nests a dozen levels; deeper is hostile
DEFAULT_COUNT, MAX_COUNT = 50, 500  # ITI-67/66 page sizes
SEARCH = {"patient", "patient.identifier", "status", "identifier", "type", "category", "format", "setting", "facility",
          "security-label", "event", "creation", "date", "_count", "_page", "_format"}
LIST_SEARCH = {"patient", "patient.identifier", "status", "code", "identifier", "_count", "_page", "_format"}
_STATUS = {"current": ebrim.APPROVED, "superseded": ebrim.DEPRECATED}
# what the services kit refuses before the stand-in reads a request: the issue's code, the message
ARCHIVED = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-isarchived"  # PDSm_IsArchived
REFUSALS = {"too-large": ("too-costly", "standin.too-large"), "deadline": ("timeout", "standin.deadline"),
            "internal": ("exception", "standin.internal"), "broken": ("structure", "standin.broken")}


class StoreUnavailable(Exception):
    pass


@dataclass
class PdsmExchange(Exchange):
    # the XML documents an ITI-65 bundle carried, as (DocumentReference's path, bytes), read once
    # here for the collector (the DMP simulator's exchanges keep theirs the same way)
    documents: list[tuple[str, bytes]] = field(default_factory=list)


class PdsmStandIn(HttpService):
    name = "pdsm"
    server_header = "harness-pdsm"
    bounds = ConnectionBounds(max_connections=32, deadline=300.0, idle=10.0)
    max_request = MAX_REQUEST
    request_deadline = 120.0
    exchange_type = PdsmExchange

    def __init__(self, *, port: int = 0, credentials: Path | None = None, store: str = "", max_request: int = MAX_REQUEST,
                 max_document: int = MAX_DOCUMENT, patients: tuple[str, ...] = (), page_size: int = DEFAULT_COUNT) -> None:
        self.max_request = max_request
        self.page_size = max(1, min(int(page_size), MAX_COUNT))  # a search's page when the client names no _count
        self.store = store  # the name of the service whose registry this one fronts ("" : its own)
        self.own = registry.Registry(max_document, patients=patients)
        self._mapped: dict[str, tuple] = {}  # entryUUID -> ((version, status), patient, DocumentReference)
        self._archived: dict[str, bool] = {}  # entryUUID -> PDSm isArchived, as flow 03 set it (no XDS attribute holds it)
        self.searches_fail = False  # set by the harness: every search answered 503 (what the software says then is judged)
        self._credentials = pki.ServiceCredentials("Harness PDSm", org="Harness PDSm stand-in (test)", folder=credentials, prefix="harness-pdsm-")
        self.pki, self.credentials = self._credentials.pki, self._credentials.folder
        try:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(self.credentials / "server.pem", self.credentials / "server.key")
            super().__init__(port=port, tls=ctx)
        except BaseException:
            self._credentials.close()
            raise

    @property
    def registry(self) -> registry.Registry:
        if not self.store:
            return self.own
        shared = registry.shared(self.store)
        if shared is None:
            raise StoreUnavailable(self.store)
        return shared

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self._credentials.close()

    # -- answers ----------------------------------------------------------------------------

    def _wants_xml(self, request: Request) -> bool:
        fmt = (request.query.get("_format") or [""])[0]
        if fmt:
            return "xml" in fmt
        accept = request.header("Accept")
        return any(t in accept for t in XML_TYPES) and not any(t in accept for t in JSON_TYPES)

    def _resource(self, request: Request, status: int, resource: dict, **kw: Any) -> Response:
        if self._wants_xml(request):
            try:
                from fhir.resources.R4B import get_fhir_model_class

                model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
                return Response(status, model.model_dump_xml(), f"{FHIR_XML}; charset=utf-8", **kw)
            except Exception:  # noqa: BLE001 (a resource it cannot write in XML is answered in JSON, never not at all)
                pass
        return Response(status, json.dumps(resource, ensure_ascii=False).encode("utf-8"), f"{FHIR_JSON}; charset=utf-8", **kw)

    def _outcome(self, request: Request, status: int, issues: list[tuple[str, str, str]], **kw: Any) -> Response:
        ex = request.exchange
        ex.facts["outcome"] = "refused" if status >= 400 else ex.facts.get("outcome", "")
        ex.facts.setdefault("issues", []).extend({"severity": s, "code": c} for s, c, _ in issues)
        return self._resource(request, status, mhd.operation_outcome(issues), **kw)

    def refusal(self, exchange: Any, status: int, why: str, detail: str) -> Response:
        exchange.facts["outcome"] = why
        code, key = REFUSALS[why]
        body = mhd.operation_outcome([("error", code, M(key, detail=detail).render("fr"))])
        return Response(status, json.dumps(body, ensure_ascii=False).encode("utf-8"), f"{FHIR_JSON}; charset=utf-8", close=why != "internal")

    # -- routing ----------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        ex = request.exchange
        path = request.path.strip("/")
        parts = path.split("/") if path else []
        try:
            if request.method == "GET" and parts == ["metadata"]:
                ex.facts["transaction"] = "metadata"
                return self._resource(request, 200, capability_statement(self.base_url))
            if request.method == "POST" and not parts:
                ex.facts["transaction"] = "ITI-65"
                return self.provide(request)
            if parts[:1] == ["DocumentReference"] and (request.method == "GET" and len(parts) == 1 or request.method == "POST" and parts[1:] == ["_search"]):
                ex.facts["transaction"] = "ITI-67"
                return self.find_documents(request)
            if parts[:1] == ["List"] and (request.method == "GET" and len(parts) == 1 or request.method == "POST" and parts[1:] == ["_search"]):
                ex.facts["transaction"] = "ITI-66"
                return self.find_lists(request)
            if request.method == "GET" and len(parts) == 2 and parts[0] == "DocumentReference":
                ex.facts["transaction"] = "read DocumentReference"
                return self.read_document_reference(request, parts[1])
            if request.method == "GET" and len(parts) == 2 and parts[0] == "List":
                ex.facts["transaction"] = "read List"
                return self.read_list(request, parts[1])
            if request.method == "PATCH" and parts[:1] == ["DocumentReference"] and len(parts) <= 2:
                ex.facts["transaction"] = "PATCH (flow 03)"
                return self.patch(request, parts[1] if len(parts) == 2 else None)
            if request.method == "GET" and len(parts) == 2 and parts[0] == "Binary":
                ex.facts["transaction"] = "ITI-68"
                return self.retrieve(request, parts[1])
        except StoreUnavailable as exc:
            return self._outcome(request, 503, [("error", "transient", M("standin.store", store=str(exc)).render("fr"))])
        ex.facts["transaction"] = "unknown"
        return self._outcome(request, 404 if request.method in ("GET", "POST", "PATCH") else 405,
                             [("error", "not-supported", M("standin.unknown", method=request.method, path=request.path[:200]).render("fr"))])

    # -- ITI-65 -------------------------------------------------------------------------------

    def provide(self, request: Request) -> Response:
        ex = request.exchange
        try:
            bundle = read_bundle(request.body, request.header("Content-Type"), max_bytes=self.max_request)
        except UnsafeInput as exc:
            ex.facts["problems"] = ["FHIR-00"]
            return self._outcome(request, 415 if exc.reason == "media-type" else 400, [("error", "structure", exc.detail.render("fr"))])
        except Exception as exc:  # noqa: BLE001 (XML that fhir.resources cannot read as a Bundle)
            ex.facts["problems"] = ["FHIR-00"]
            return self._outcome(request, 400, [("error", "structure", M("standin.unreadable", error=type(exc).__name__).render("fr"))])
        provided = mhd.read_provide(bundle)
        for dr in provided.documents:  # what it carried, kept whatever the answer (the CDA checks judge it)
            data = mhd.binary(provided, dr)[1]
            if data is not None and "xml" in str(mhd.attachment(dr.resource).get("contentType") or ""):
                ex.documents.append((dr.path, data))
        structure = fhir_problems(bundle)
        if structure:
            ex.facts["problems"] = ["FHIR-01"]
            return self._outcome(request, 400, [("error", "structure", f"{where} : {text}") for where, text in structure[:100]])
        failing = [p for p in provided.problems if p.severity.fails]
        if failing:
            ex.facts["problems"] = sorted({p.rule for p in failing})
            return self._outcome(request, 422, [("error", "invariant" if p.rule.startswith("PDSM") else "processing",
                                                 f"{p.rule} {p.location} : {p.message.render('fr')}") for p in failing])
        mapped = mhd.to_xds(provided)
        failing = [p for p in mapped.problems if p.severity.fails]
        if failing:
            ex.facts["problems"] = sorted({p.rule for p in failing})
            return self._outcome(request, 422, [("error", "XDSUnknownPatientId" if p.rule == "MHD-MAP-02" else "processing",
                                                 f"{p.rule} {p.location} : {p.message.render('fr')}") for p in failing])
        outcome = self.registry.provide_set(mapped.request, mapped.documents)
        ex.facts.update({"registry": outcome.status, "errors": [code for code, _ in outcome.errors], **outcome.facts})
        if outcome.status != "Success":
            return self._outcome(request, 422, [("error", code, context) for code, context in outcome.errors])
        ex.facts["outcome"] = "stored"
        entries = []
        for item in provided.items:
            entry_id = mapped.ids.get(item.full_url)
            if item.type == "DocumentReference" and entry_id:
                location = f"DocumentReference/{entry_id.removeprefix('urn:uuid:')}/_history/1"
            elif item.type == "List" and entry_id:
                location = f"List/{entry_id.removeprefix('urn:uuid:')}/_history/1"
            elif item.type == "Binary":
                owner = next((mapped.ids[dr.full_url] for dr in provided.documents if mhd.attachment(dr.resource).get("url") == item.full_url), "")
                location = f"Binary/{owner.removeprefix('urn:uuid:')}" if owner else f"Binary/{item.index}"
            else:
                location = f"{item.type}/{item.index}"
            response: dict = {"status": "201 Created", "location": location}
            # an entry's warnings in its outcome (ITI-65 2:3.65.4.2.2): a folder not kept, what the mapping said of it
            warnings = [("warning", "PartialFolderContentNotProcessed", M("standin.folders").render("fr"))] if item in provided.folders else []
            warnings += [("warning", "processing", f"{p.rule} {p.location} : {p.message.render('fr')}")
                         for p in mapped.problems if p.location.startswith(item.path)]
            if warnings:
                response["outcome"] = mhd.operation_outcome(warnings)
            entries.append({"response": response})
        ex.facts["locations"] = [e["response"]["location"] for e in entries]
        return self._resource(request, 200, {"resourceType": "Bundle", "type": "transaction-response", "entry": entries})

    # -- ITI-67 / ITI-66 ------------------------------------------------------------------------

    def _params(self, request: Request) -> dict[str, list[str]]:
        params = dict(request.query)
        if request.method == "POST":  # _search: the parameters as a form
            for k, v in parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True).items():
                params.setdefault(k, []).extend(v)
        return params

    def _search(self, request: Request) -> tuple[dict[str, list[str]], Response | None]:
        """A search's parameters, recorded; the refusal when the patient or the status is missing,
        or the failure the harness asked for."""
        params = self._params(request)
        request.exchange.facts["params"] = dict(params)
        if self.searches_fail:
            request.exchange.facts["failed_on_purpose"] = True
            return params, self._outcome(request, 503, [("error", "transient", M("standin.searches_fail").render("fr"))], headers={"Retry-After": "30"})
        problem = _required(params)
        return params, (self._outcome(request, 400, [("error", "required", problem)]) if problem else None)

    def find_documents(self, request: Request) -> Response:
        ex = request.exchange
        params, refused = self._search(request)
        if refused is not None:
            return refused
        reg = self.registry
        try:
            patient = _patient(params)
            statuses = {_STATUS.get(v) for v in _values(params, "status")} - {None}
            with reg.lock:
                held = [(self._reference(s)[0], self._document(s)) for s in reg.by_uuid.values() if s.status in statuses]
            found = [dr for who, dr in held if who == patient and _matches(dr, params)]
        except ValueError as exc:
            return self._outcome(request, 400, [("error", "invalid", str(exc))])
        ignored = sorted(set(params) - SEARCH)
        ex.facts.update({"found": [dr["id"] for dr in found], "ignored": ignored})
        return self._searchset(request, "DocumentReference", found, params, ignored)

    def _document(self, stored: registry.Stored) -> dict:
        """The DocumentReference of a stored entry as every interaction shows it: the mapped
        form, with the isArchived extension flow 03 set (a copy then: the cached form stays)."""
        dr = self._reference(stored)[1]
        if stored.entry_uuid not in self._archived:
            return dr
        return {**dr, "extension": [*dr.get("extension", []), {"url": ARCHIVED, "valueBoolean": self._archived[stored.entry_uuid]}]}

    def _reference(self, stored: registry.Stored) -> tuple[tuple[str, str] | None, dict]:
        """A stored entry's patient (id, OID) and DocumentReference, mapped once per version and
        status (10,000 entries are searched in milliseconds, not mapped again at each search)."""
        from harness_xds.rules import parse_cx

        cached = self._mapped.get(stored.entry_uuid)
        if cached is not None and cached[0] == (stored.version, stored.status):
            return cached[1], cached[2]
        dr = mhd.document_reference(stored.element, version=stored.version,
                                    document_url=f"{self.base_url}Binary/{stored.entry_uuid.removeprefix('urn:uuid:')}")
        who = parse_cx(stored.patient)
        self._mapped[stored.entry_uuid] = ((stored.version, stored.status), who, dr)
        return who, dr

    def find_lists(self, request: Request) -> Response:
        ex = request.exchange
        params, refused = self._search(request)
        if refused is not None:
            return refused
        codes = _values(params, "code")
        reg = self.registry
        try:
            patient = _patient(params)
            with reg.lock:
                lists = [mhd.submission_set_list(p.element, p.members, base=self.base_url) for p in reg.packages.values() if _same_patient(p.patient, patient)]
        except ValueError as exc:
            return self._outcome(request, 400, [("error", "invalid", str(exc))])
        if codes and not any(c.split("|")[-1] == "submissionset" for c in codes):
            lists = []  # folders are not kept (PartialFolderContentNotProcessed)
        if "current" not in _values(params, "status"):
            lists = []
        identifiers = _values(params, "identifier")
        if identifiers:
            lists = [lst for lst in lists if any(i.split("|")[-1] in {x["value"] for x in lst["identifier"]} for i in identifiers)]
        ignored = sorted(set(params) - LIST_SEARCH)
        ex.facts.update({"found": [lst["id"] for lst in lists], "ignored": ignored})
        return self._searchset(request, "List", lists, params, ignored)

    def _searchset(self, request: Request, kind: str, resources: list[dict], params: dict[str, list[str]], ignored: list[str]) -> Response:
        try:
            count = min(max(int((params.get("_count") or [self.page_size])[0]), 0), MAX_COUNT)
            page = max(int((params.get("_page") or ["0"])[0]), 0)
        except ValueError:
            return self._outcome(request, 400, [("error", "invalid", M("standin.paging").render("fr"))])
        shown = resources[page * count:(page + 1) * count]
        keep = {k: v for k, v in params.items() if k not in ("_page",) and k in (SEARCH | LIST_SEARCH)}

        def link(n: int) -> str:
            return f"{self.base_url}{kind}?{urlencode({**keep, '_page': [str(n)]}, doseq=True)}"

        links = [{"relation": "self", "url": link(page)}]
        if (page + 1) * count < len(resources):
            links.append({"relation": "next", "url": link(page + 1)})
        if page > 0:
            links.append({"relation": "previous", "url": link(page - 1)})
        entries = [{"fullUrl": f"{self.base_url}{kind}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in shown]
        if ignored:
            entries.append({"resource": mhd.operation_outcome([("warning", "not-supported", M("standin.ignored", params=", ".join(ignored)).render("fr"))]),
                            "search": {"mode": "outcome"}})
        request.exchange.facts.update(outcome="found", total=len(resources), shown=len(shown), page=page, next=(page + 1) * count < len(resources))
        return self._resource(request, 200, {"resourceType": "Bundle", "type": "searchset", "total": len(resources), "link": links, "entry": entries})

    # -- PDSm flow 03: a DocumentReference's status, confidentiality, archiving --------------------

    def patch(self, request: Request, fhir_id: str | None) -> Response:
        """PDSm flow 03/04: a FHIR ``patch`` (conditional on the business identifier, or on the
        id) in JSON Patch (RFC 6902); only ``status``, ``securityLabel`` and the isArchived
        extension may change (else 405, as the guide says); the entry gets a new version. XML
        Patch and FHIRPath Patch, which the guide also allows, are not taken (415, said)."""
        import jsonpatch

        ex = request.exchange
        media = request.header("Content-Type").split(";")[0].strip().lower()
        if media != "application/json-patch+json":
            return self._outcome(request, 415, [("error", "not-supported", M("standin.patch_media", media=media or "-").render("fr"))])
        reg = self.registry
        with reg.lock:
            if fhir_id is not None:
                matches = [s for s in reg.by_uuid.values() if s.entry_uuid == f"urn:uuid:{fhir_id}"]
            else:
                wanted = {c for token in _values(request.query, "identifier") for c in _identifier_candidates(token)}
                if not wanted:
                    return self._outcome(request, 400, [("error", "required", M("standin.patch_condition").render("fr"))])
                matches = [s for s in reg.by_uuid.values() if s.entry_uuid in wanted or s.unique_id in wanted]
        if len(matches) != 1:  # FHIR conditional patch: none is 404, several 412
            return self._outcome(request, 404 if not matches else 412,
                                 [("error", "not-found" if not matches else "multiple-matches", M("standin.patch_matches", count=len(matches)).render("fr"))])
        stored = matches[0]
        with reg.lock:
            before = json.loads(json.dumps(self._document(stored)))
        try:
            operations = parse_json(request.body, source="PATCH", max_bytes=256 * 1024, max_depth=MAX_JSON_DEPTH)
            after = jsonpatch.JsonPatch(operations).apply(before)
        except UnsafeInput as exc:
            return self._outcome(request, 400, [("error", "structure", exc.detail.render("fr"))])
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, ValueError, AttributeError) as exc:
            return self._outcome(request, 422, [("error", "processing", M("standin.patch_failed", reason=str(exc)[:300]).render("fr"))])
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        ex.facts["changed"] = changed
        others = [k for k in changed if k not in ("status", "securityLabel", "extension")]
        ext_other = [e for e in (after.get("extension") or []) if e.get("url") != ARCHIVED] != [e for e in (before.get("extension") or []) if e.get("url") != ARCHIVED]
        if others or ext_other:
            return self._outcome(request, 405, [("error", "business-rule", M("standin.patch_elements", elements=", ".join(others or ["extension"])).render("fr"))])
        from fhir.resources.R4B.documentreference import DocumentReference
        from pydantic import ValidationError

        try:
            DocumentReference.model_validate(after)
        except ValidationError as exc:
            return self._outcome(request, 422, [("error", "structure", str(err.get("msg"))[:200]) for err in exc.errors(include_input=False)][:20])
        status = None
        if "status" in changed:
            status = _STATUS.get(str(after.get("status")))
            if status is None:
                return self._outcome(request, 422, [("error", "code-invalid", M("standin.patch_status", status=str(after.get("status"))[:40]).render("fr"))])
        confidentiality = None
        if "securityLabel" in changed:
            confidentiality = []
            for cc in after.get("securityLabel") or []:
                for c in (cc.get("coding") or [])[:1]:
                    confidentiality.append(ebrim.Coded(str(c.get("code") or ""), mhd.system_oid(str(c.get("system") or "")) or str(c.get("system") or ""),
                                                       str(c.get("display") or ""), ""))
        if "extension" in changed:
            archived = next((e.get("valueBoolean") for e in after.get("extension") or [] if e.get("url") == ARCHIVED), None)
            self._archived[stored.entry_uuid] = bool(archived)
        version = reg.amend(stored.entry_uuid, status=status, confidentiality=confidentiality)  # a new version, whatever changed (flow 03)
        with reg.lock:
            dr = self._document(stored)
        ex.facts.update(outcome="updated", entry=stored.entry_uuid, version=version)
        return self._resource(request, 200, dr, headers={"ETag": f'W/"{version}"'})

    # -- reads and ITI-68 ---------------------------------------------------------------------

    def read_document_reference(self, request: Request, fhir_id: str) -> Response:
        reg = self.registry
        with reg.lock:
            stored = reg.by_uuid.get(f"urn:uuid:{fhir_id}")
            dr = self._document(stored) if stored else None
        if dr is None:
            return self._outcome(request, 404, [("error", "not-found", M("standin.not_found", kind="DocumentReference", id=fhir_id[:100]).render("fr"))])
        request.exchange.facts["outcome"] = "found"
        return self._resource(request, 200, dr, headers={"ETag": f'W/"{stored.version}"'})

    def read_list(self, request: Request, fhir_id: str) -> Response:
        reg = self.registry
        with reg.lock:
            package = reg.packages.get(f"urn:uuid:{fhir_id}")
            lst = mhd.submission_set_list(package.element, package.members, base=self.base_url) if package else None
        if lst is None:
            return self._outcome(request, 404, [("error", "not-found", M("standin.not_found", kind="List", id=fhir_id[:100]).render("fr"))])
        request.exchange.facts["outcome"] = "found"
        return self._resource(request, 200, lst)

    def retrieve(self, request: Request, fhir_id: str) -> Response:
        """ITI-68: the document as stored, in its MIME type (MHD: the responder need not
        transform it); as a Binary resource when the client asks for FHIR only."""
        reg = self.registry
        with reg.lock:
            stored = reg.by_uuid.get(f"urn:uuid:{fhir_id}")
            data = stored.data if stored else None
            mime = (stored.element.get("mimeType") or "application/octet-stream") if stored else ""
            status = stored.status if stored else ""
        ex = request.exchange
        if data is None:
            return self._outcome(request, 404, [("error", "not-found", M("standin.not_found", kind="Binary", id=fhir_id[:100]).render("fr"))])
        ex.facts.update({"outcome": "returned", "document": stored.unique_id, "entry": stored.entry_uuid, "size": len(data),
                         "sha256": hashlib.sha256(data).hexdigest(), "status": "current" if status == ebrim.APPROVED else "superseded"})
        accept = request.header("Accept")
        if accept and any(t in accept for t in JSON_TYPES + XML_TYPES) and mime not in accept and "*/*" not in accept:
            return self._resource(request, 200, {"resourceType": "Binary", "id": fhir_id, "contentType": mime,
                                                 "data": base64.b64encode(data).decode("ascii")})
        return Response(200, data, mime)


def read_bundle(data: bytes, content_type: str, *, max_bytes: int = MAX_REQUEST) -> dict:
    """An ITI-65 request's body as FHIR JSON data: JSON through the bounded parser; XML through
    the hardened parser, then fhir.resources' XML reading (raises :class:`UnsafeInput`, or the
    reader's error for XML that is no FHIR Bundle)."""
    media = content_type.split(";")[0].strip().lower()
    if media in XML_TYPES:
        root = parse_xml(data, source="ITI-65").getroot()
        from fhir.resources.R4B.bundle import Bundle
        from fhir_core.xml_utils import Node

        return json.loads(Node.from_element(root, fhir_class=Bundle).to_fhir(Bundle).model_dump_json(exclude_none=True))
    if media not in JSON_TYPES:
        raise UnsafeInput("media-type", M("standin.media_type", media=media or "-"))
    return parse_json(data, source="ITI-65", max_bytes=max_bytes, max_depth=MAX_JSON_DEPTH)


# -- search ------------------------------------------------------------------------------------

def _values(params: dict[str, list[str]], name: str) -> list[str]:
    return [v for raw in params.get(name, []) for v in raw.split(",") if v]


def _identifier_candidates(token: str) -> set[str]:
    """What ``identifier=system|value`` may name: an entryUUID, a uniqueId (``urn:oid:X`` is X;
    under an OID system, ``OID^value``: a CDA id's root and extension, as the stand-in writes it)."""
    system, bar, value = token.rpartition("|")
    out = {value, value.removeprefix("urn:oid:")}
    if bar and system.startswith("urn:oid:"):
        out.add(f"{system[8:]}^{value}")
    return {v for v in out if v}


def _required(params: dict[str, list[str]]) -> str:
    """MHD ITI-67 (and PDSm's note): a search carries the patient and the status."""
    if not (_values(params, "patient.identifier") or _values(params, "patient")):
        return M("standin.need_patient").render("fr")
    if not _values(params, "status"):
        return M("standin.need_status").render("fr")
    return ""


def _patient(params: dict[str, list[str]]) -> tuple[str, str]:
    """``patient.identifier=system|value`` (an INS: ``urn:oid:1.2.250.1.213.1.4.8|...``) as (id, OID)."""
    token = (_values(params, "patient.identifier") or [""])[0]
    if not token:
        ref = (_values(params, "patient") or [""])[0]
        raise ValueError(M("standin.patient_reference", reference=ref[:100]).render("fr"))
    system, _, value = token.rpartition("|")
    oid = system.removeprefix("urn:oid:")
    if not value or not re.fullmatch(r"[0-2](\.\d+)+", oid):
        raise ValueError(M("standin.patient_token", token=token[:100]).render("fr"))
    return value, oid


def _same_patient(cx: str, patient: tuple[str, str]) -> bool:
    from harness_xds.rules import parse_cx

    return parse_cx(cx) == patient


def _tokens(values: list[dict]) -> set[tuple[str, str]]:
    return {(str(c.get("system") or ""), str(c.get("code") or "")) for cc in values if isinstance(cc, dict) for c in (cc.get("coding") or [cc])}


def _token_match(wanted: list[str], held: set[tuple[str, str]]) -> bool:
    for token in wanted:
        system, bar, code = token.rpartition("|")
        oid = mhd.system_oid(system)
        if any(c == code and (not bar or s == system or (oid is not None and mhd.system_oid(s) == oid)) for s, c in held):
            return True
    return False


def _date_match(wanted: list[str], value: str | None) -> bool:
    if value is None:
        return False
    for w in wanted:
        prefix, when = (w[:2], w[2:]) if w[:2] in ("ge", "le", "gt", "lt", "eq") else ("eq", w)
        a, b = value[:len(when)], when
        if not {"ge": a >= b, "le": a <= b, "gt": a > b, "lt": a < b, "eq": a == b}[prefix]:
            return False
    return True


def _matches(dr: dict, params: dict[str, list[str]]) -> bool:
    context = dr.get("context") or {}
    content = (dr.get("content") or [{}])[0]
    fields = {"type": [dr.get("type")], "category": dr.get("category") or [], "format": [content.get("format")],
              "setting": [context.get("practiceSetting")], "facility": [context.get("facilityType")],
              "security-label": dr.get("securityLabel") or [], "event": context.get("event") or []}
    for name, values in fields.items():
        wanted = _values(params, name)
        if wanted and not _token_match(wanted, _tokens([v for v in values if v])):
            return False
    identifiers = _values(params, "identifier")
    if identifiers:
        held = {i.get("value") for i in dr.get("identifier") or []} | {(dr.get("masterIdentifier") or {}).get("value")}
        if not any(i.split("|")[-1] in held for i in identifiers):
            return False
    creation = (content.get("attachment") or {}).get("creation")
    if _values(params, "creation") and not _date_match(_values(params, "creation"), creation):
        return False
    if _values(params, "date") and not _date_match(_values(params, "date"), dr.get("date") or creation):
        return False
    return True


# -- FHIR structure ----------------------------------------------------------------------------

def fhir_problems(bundle: Any) -> list[tuple[str, str]]:
    """FHIR R4 structure (types, required elements, no unknown element), by fhir.resources:
    each error as (its FHIR path, pydantic's message; never the value sent)."""
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    try:
        Bundle.model_validate(bundle)
    except ValidationError as exc:
        out = []
        for err in exc.errors(include_input=False, include_url=False):
            path = "Bundle" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.get("loc", ()))
            out.append((path, str(err.get("msg", ""))[:300]))
        return out
    except (TypeError, ValueError, RecursionError) as exc:
        return [("Bundle", type(exc).__name__)]
    return []


def capability_statement(base: str) -> dict:
    """What the stand-in answers: MHD Document Recipient (Comprehensive) and Document Responder."""
    search = [{"name": n, "type": t} for n, t in (("patient", "reference"), ("patient.identifier", "token"), ("status", "token"),
                                                   ("identifier", "token"), ("type", "token"), ("category", "token"), ("format", "token"),
                                                   ("setting", "token"), ("facility", "token"), ("security-label", "token"),
                                                   ("event", "token"), ("creation", "date"), ("date", "date"))]
    return {"resourceType": "CapabilityStatement", "status": "active", "date": "2026-12-06", "kind": "instance", "fhirVersion": "4.0.1",
            "format": [FHIR_JSON, FHIR_XML], "software": {"name": "harness PDSm stand-in"}, "implementation": {"description": "PDSm stand-in", "url": base},
            "instantiates": ["https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentRecipient.Comprehensive",
                             "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentResponder"],
            "rest": [{"mode": "server", "interaction": [{"code": "transaction"}],
                      "resource": [{"type": "DocumentReference", "interaction": [{"code": "read"}, {"code": "search-type"}], "searchParam": search},
                                   {"type": "List", "interaction": [{"code": "read"}, {"code": "search-type"}]},
                                   {"type": "Binary", "interaction": [{"code": "read"}]}]}]}
