"""A local FHIR terminology server on loopback: the SMT's operations, answered from a snapshot
by the terminology engine (:mod:`.engine`).

For the demo, the tests and projectathon rehearsals: the harness's remote client talks to
it exactly as it talks to the national server (``/metadata``, ``ValueSet/$validate-code``,
``CodeSystem/$lookup``, ``CodeSystem/$validate-code``, ``ValueSet/$expand``,
``ConceptMap/$translate``; GET with query parameters, or POST with a FHIR ``Parameters``
body or a form), including the password-grant token endpoint (``/token``) when users are
given. A request may carry its own code systems and value sets (``tx-resource``), as the
HL7 terminology test suite's runner sends them; names the snapshot knows (a value set by
OID or NOS name, a system by OID) are those the engine is asked. A request the engine fails
on is a 500 with the exception's type, never a hang-up. It counts what it is asked, so a
benchmark can show how many questions reached it.

Faults can be switched on to rehearse failures: ``slow`` (answers after ``delay``
seconds), ``error500``, ``garbage`` (not JSON), ``cut`` (connection closed without an
answer), ``refuse-token`` (the identity provider says no), ``reject-bearer`` (every
token refused by the server itself), ``throttle`` (the next request answered 429 with
``Retry-After``, then served), ``stall`` (no answer: the connection held silent until the
client gives up, or ``stall`` seconds, then closed), ``error503`` (service unavailable),
``not-found`` (404: the value set or code system asked of is not found). ``op_faults`` gives
one operation its own fault, instead of the others (``{"ValueSet/$expand": "not-found"}``). ``cache_control``,
when set, is sent with every answer: one header, or one per operation (``"*"`` for the
others).
"""
from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

from ..errors import HarnessError, UnsafeInput
from ..messages import catalogue
from ..safety.inputs import parse_json
from ..services.bounds import ConnectionBounds
from ..services.http import HttpService, Request, Response
from .engine import Engine, Params, TxError, parse_languages
from .model import bare_oid
from .snapshot import SnapshotTerminology

M = catalogue(__name__)

FAULTS = ("slow", "error500", "garbage", "cut", "refuse-token", "reject-bearer", "throttle", "stall", "error503", "not-found")
# the faults that answer in place of the operation, in the order they prevail
ANSWERING = ("cut", "stall", "error500", "error503", "not-found", "throttle", "garbage")
STALL = 10.0  # seconds the ``stall`` fault holds a request at most before closing the connection unanswered
RETRY_AFTER = 1  # seconds a throttled client is told to wait (the ``throttle`` fault: its first request only, 429)
FHIR_JSON = "application/fhir+json; charset=utf-8"
MAX_BODY = 16 * 1024 * 1024  # a request may carry its own code systems and value sets (tx-resource)


def _outcome(code: str, text: str) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


class TerminologyServer(HttpService):
    """Start with :meth:`start`; ``base_url`` ends with ``/fhir/``; :meth:`stop` when done."""

    name = "terminology-standin"
    server_header = "harness-terminology"
    bounds = ConnectionBounds(max_connections=32, deadline=300.0, idle=15.0)
    max_request = MAX_BODY
    max_recorded = 10_000  # a benchmark asks more: counted, not kept

    def __init__(self, terminology: SnapshotTerminology, *, host: str = "127.0.0.1", port: int = 0,
                 users: dict[str, str] | None = None, faults: tuple[str, ...] = (), delay: float = 0.0,
                 version: str = "", latency: float = 0.0) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise HarnessError(M("standin.unknown_faults", faults=", ".join(sorted(unknown)), known=", ".join(FAULTS)))
        self.terminology = terminology
        self.users = dict(users or {})
        self.faults = set(faults)
        self.op_faults: dict[str, str] = {}  # operation: a fault for that operation only
        self.cache_control: str | dict[str, str] = ""  # Cache-Control for every answer, or per operation ("*": the others)
        self.stall = STALL
        self.throttled = False  # the throttle fault's one 429 was answered
        self.retry_after = RETRY_AFTER  # seconds the throttle fault's 429 asks to wait
        self.delay = delay
        self.latency = latency  # added to every answer: a distant server, for benchmarks
        self.version = version
        self.requests: Counter[str] = Counter()
        self.failures: list[str] = []  # requests the engine failed on (a 500 was answered)
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        super().__init__(host=host, port=port)

    @property
    def root_url(self) -> str:
        return super().base_url

    @property
    def base_url(self) -> str:
        return self.root_url + "fhir/"

    @property
    def token_url(self) -> str:
        return self.root_url + "token"

    # -- answering ----------------------------------------------------------------------

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self.terminology.snapshot.engine(self.terminology.as_of)
        return self._engine

    def _normalise(self, engine: Engine, params: Params) -> Params:
        """Names the snapshot knows (a value set by OID or NOS name, a system by OID) as the
        engine knows them: the harness's own client asks with the names CDA documents use."""
        snap = self.terminology.snapshot
        values = {k: list(v) for k, v in params.values.items()}
        url = params.get("url")
        if isinstance(url, str) and engine.find_value_set(url) is None and engine.find_concept_map(url) is None:
            found = snap.find_value_set(url)
            if found is not None:
                values["url"] = [(found.url or f"urn:oid:{found.oid}") + (url[url.index("|"):] if "|" in url else "")]
            elif bare_oid(url) or url.startswith("urn:oid:"):
                values["url"] = [snap.system_uri(url)]
        if isinstance(params.get("system"), str):
            values["system"] = [snap.system_uri(params.get("system"))]
        if isinstance(params.get("coding"), dict) and params.get("coding").get("system"):
            values["coding"] = [{**params.get("coding"), "system": snap.system_uri(params.get("coding")["system"])}]
        return Params(values)

    def answer(self, path: str, params: Params, languages: list[str] | None = None,
               threshold: int | None = None) -> tuple[int, dict]:
        """The answer to one operation: (HTTP status, FHIR resource)."""
        if path == "metadata":
            t = self.terminology
            return 200, {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
                         "software": {"name": "ehealth-harness terminology stand-in", "version": self.version or t.snapshot.sha256[:12]},
                         "date": "2026-01-01"}
        engine = self.engine().overlay([r for r in params.all("tx-resource") if isinstance(r, dict)])
        profile = params.get("profile")
        if isinstance(profile, dict) and profile.get("resourceType") == "Parameters":
            params = params.merge(Params.from_resource(profile))
        try:
            params = self._normalise(engine, params)
            if path == "ValueSet/$validate-code":
                return 200, engine.validate_vs(params, languages=languages)
            if path == "CodeSystem/$validate-code":
                return 200, engine.validate_cs(params, languages=languages)
            if path == "CodeSystem/$lookup":
                return 200, engine.lookup(params, languages=languages)
            if path == "ValueSet/$expand":
                return 200, engine.expand(params, languages=languages, threshold=threshold)
            if path == "ConceptMap/$translate":
                return 200, engine.translate(params)
        except TxError as exc:
            return exc.status, exc.outcome()
        except RecursionError:
            return 422, TxError(422, "too-costly", "The value set nests too deeply to be evaluated").outcome()
        return 404, _outcome("not-supported", f"unknown operation: {path}")

    def _issue_token(self, form: dict[str, str]) -> tuple[int, dict]:
        if "refuse-token" in self.faults or form.get("grant_type") != "password" or \
                self.users.get(form.get("username", "")) != form.get("password") or form.get("username") is None:
            return 401, {"error": "invalid_grant", "error_description": "Invalid user credentials"}
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens.add(token)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 300}

    def _authorised(self, header: str | None) -> bool:
        if not self.users:
            return True
        if "reject-bearer" in self.faults or not header or not header.startswith("Bearer "):
            return False
        with self._lock:
            return header[7:] in self._tokens


    # -- the kit's hook ---------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        try:
            params = _params(request)
        except (ValueError, AttributeError, UnsafeInput):
            return _send(400, _outcome("invalid", "unreadable request body"))
        path = request.path
        if path == "/token" and request.method == "POST":
            self.requests["token"] += 1
            return _send(*self._issue_token({k: str(v[0]) for k, v in params.values.items() if v}))
        if not path.startswith("/fhir/"):
            return _send(404, _outcome("not-found", "the FHIR base is /fhir/"))
        op = path[len("/fhir/"):].strip("/")
        self.requests[op] += 1
        # what was asked, as data (the consumption scenarios judge what a software asks): the
        # operation, its parameters (not tx-resource's resources), the language and the client
        request.exchange.facts.update(op=op, params={k: v for k, v in params.values.items() if k != "tx-resource"},
                                      accept_language=request.header("Accept-Language"), user_agent=request.header("User-Agent")[:200])
        if op != "metadata" and not self._authorised(request.header("Authorization")):
            return _send(401, _outcome("login", "bearer token missing or refused"))
        if self.latency:
            time.sleep(self.latency)
        faults = {self.op_faults[op]} if op in self.op_faults else self.faults
        if "slow" in faults:  # a delay, then whatever else applies
            time.sleep(self.delay or 5.0)
        # the one fault this request meets, the first of ANSWERING that is on (throttle: once)
        fault = next((f for f in ANSWERING if f in faults and (f != "throttle" or not self.throttled)), None)
        if fault is not None:
            request.exchange.facts["fault"] = fault
        if fault == "cut":
            return Response(cut=True)
        if fault == "stall":
            return Response(hold=self.stall)
        if fault == "error500":
            return _send(500, _outcome("exception", "simulated failure"))
        if fault == "error503":
            return _send(503, _outcome("transient", "service unavailable (simulated)"))
        if fault == "not-found":
            return _send(404, _outcome("not-found", f"{op.split('/')[0]} not found (simulated): {', '.join(map(str, params.all('url') or params.all('system')))[:300]}"))
        if fault == "throttle":
            self.throttled = True
            return Response(429, json.dumps(_outcome("throttled", "too many requests"), ensure_ascii=False).encode(), FHIR_JSON,
                            headers={"Retry-After": str(self.retry_after)})
        if fault == "garbage":
            return Response(200, b"<html>502 Bad Gateway</html>\x00\xff", FHIR_JSON)
        threshold = request.header("X-TOO-COSTLY-THRESHOLD")
        try:
            answer = self.answer(op, params, parse_languages(request.header("Accept-Language") or None),
                                 int(threshold) if threshold and threshold.isdigit() else None)
        except Exception as exc:  # a request the engine did not foresee: an error answer, never a hang-up
            answer = 500, _outcome("exception", f"the stand-in failed on this request ({type(exc).__name__})")
            self.failures.append(f"{op}: {type(exc).__name__}: {exc}")
        response = _send(*answer)
        control = self.cache_control if isinstance(self.cache_control, str) else self.cache_control.get(op, self.cache_control.get("*", ""))
        if control:
            response.headers["Cache-Control"] = control
            request.exchange.facts["cache_control"] = control
        return response


def _send(status: int, body: Any) -> Response:
    return Response(status, json.dumps(body, ensure_ascii=False).encode("utf-8"), FHIR_JSON)


def _params(request: Request) -> Params:
    query = request.query
    if request.method != "POST":
        return Params({k: list(v) for k, v in query.items()})
    body = request.body
    ctype = request.header("Content-Type")
    if "json" in ctype and body:
        res = parse_json(body, source="request", max_bytes=MAX_BODY)
        if not isinstance(res, dict) or res.get("resourceType") != "Parameters":
            raise ValueError("not a Parameters resource")
        return Params.from_resource(res, query)
    form = parse_qs(body.decode("utf-8", "replace")) if body else {}
    return Params({k: list(v) for k, v in {**query, **form}.items()})
