"""A local FHIR terminology server on loopback: the SMT's operations, answered from a snapshot.

For the demo, the tests and projectathon rehearsals: the harness's remote client talks to
it exactly as it talks to the national server (``/metadata``, ``ValueSet/$validate-code``,
``CodeSystem/$lookup``, ``CodeSystem/$validate-code``, ``ValueSet/$expand``,
``ConceptMap/$translate``; GET with query parameters, or POST with a FHIR ``Parameters``
body or a form), including the password-grant token endpoint (``/token``) when users are
given. It counts what it is asked, so a benchmark can show how many questions reached it.

Faults can be switched on to rehearse failures: ``slow`` (answers after ``delay``
seconds), ``error500``, ``garbage`` (not JSON), ``cut`` (connection closed without an
answer), ``refuse-token`` (the identity provider says no), ``reject-bearer`` (every
token refused by the server itself).
"""
from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..errors import HarnessError, UnsafeInput
from ..messages import catalogue
from ..safety import parse_json
from .model import Answer
from .snapshot import SnapshotTerminology

M = catalogue(__name__)

FAULTS = ("slow", "error500", "garbage", "cut", "refuse-token", "reject-bearer")
MAX_BODY = 1024 * 1024


def _outcome(code: str, text: str) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


def _parameters(answer: Answer, with_name: bool = False) -> dict:
    params: list[dict[str, Any]] = []
    if answer.op != "lookup":
        params.append({"name": "result", "valueBoolean": bool(answer.result)})
    if with_name:
        params.append({"name": "name", "valueString": answer.source.get("name", "snapshot")})
    if answer.display:
        params.append({"name": "display", "valueString": answer.display})
    if answer.message:
        params.append({"name": "message", "valueString": answer.message})
    if answer.inactive is not None:
        if answer.op == "lookup":
            params.append({"name": "property", "part": [{"name": "code", "valueCode": "inactive"},
                                                         {"name": "value", "valueBoolean": answer.inactive}]})
        else:
            params.append({"name": "inactive", "valueBoolean": answer.inactive})
    return {"resourceType": "Parameters", "parameter": params}


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    standin: "TerminologyServer"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up (timeout rehearsals) is not our problem


class TerminologyServer:
    """Start with :meth:`start`; ``base_url`` ends with ``/fhir/``; :meth:`stop` when done."""

    def __init__(self, terminology: SnapshotTerminology, *, host: str = "127.0.0.1", port: int = 0,
                 users: dict[str, str] | None = None, faults: tuple[str, ...] = (), delay: float = 0.0,
                 version: str = "", latency: float = 0.0) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise HarnessError(M("standin.unknown_faults", faults=", ".join(sorted(unknown)), known=", ".join(FAULTS)))
        self.terminology = terminology
        self.users = dict(users or {})
        self.faults = set(faults)
        self.delay = delay
        self.latency = latency  # added to every answer: a distant server, for benchmarks
        self.version = version
        self.requests: Counter[str] = Counter()
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self._httpd = _QuietServer((host, port), _Handler)
        self._httpd.standin = self
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/fhir/"

    @property
    def token_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/token"

    def start(self) -> "TerminologyServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="terminology-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- answering ----------------------------------------------------------------------

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, dict]:
        t = self.terminology
        if path == "metadata":
            return 200, {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
                         "software": {"name": "ehealth-harness terminology stand-in", "version": self.version or t.snapshot.sha256[:12]},
                         "date": "2026-01-01"}
        if path == "ValueSet/$validate-code":
            url, system, code = params.get("url"), params.get("system"), params.get("code")
            if not (url and system and code):
                return 400, _outcome("required", "url, system and code are required")
            a = t.validate_code(url, system, code)
            if a.result is None:
                return (404 if a.error and a.error["kind"] == "unknown-value-set" else 422), _outcome("not-found", a.error["en"] if a.error else "")
            return 200, _parameters(a)
        if path == "CodeSystem/$lookup":
            system, code = params.get("system"), params.get("code")
            if not (system and code):
                return 400, _outcome("required", "system and code are required")
            a = t.lookup(system, code)
            if not a.result:
                return 404, _outcome("not-found", a.message or (a.error or {}).get("en", ""))
            return 200, _parameters(a, with_name=True)
        if path == "CodeSystem/$validate-code":
            system, code = params.get("url") or params.get("system"), params.get("code")
            if not (system and code):
                return 400, _outcome("required", "url and code are required")
            a = t.lookup(system, code)
            if a.result is None:
                return 404, _outcome("not-found", (a.error or {}).get("en", ""))
            return 200, _parameters(Answer("validate-code", a.question, a.result, display=a.display, message=a.message))
        if path == "ValueSet/$expand":
            url = params.get("url")
            if not url:
                return 400, _outcome("required", "url is required")
            if t.snapshot.find_value_set(url) is None:
                return 404, _outcome("not-found", f"value set not found: {url}")
            e = t.expand(url)
            return 200, {"resourceType": "ValueSet", "url": url, "status": "active",
                         "expansion": {"identifier": f"urn:uuid:{secrets.token_hex(8)}", "timestamp": "2026-01-01T00:00:00Z",
                                       "total": e.total, "contains": e.concepts}}
        if path == "ConceptMap/$translate":
            a = t.translate(params.get("url", ""), params.get("system", ""), params.get("code", ""))
            if a.result is None:
                return 404, _outcome("not-found", (a.error or {}).get("en", ""))
            return 200, _parameters(a)
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


class _Handler(BaseHTTPRequestHandler):
    """One request to the stand-in; the server it belongs to is ``self.server.standin``."""

    server: "_QuietServer"

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _params(self) -> dict[str, str]:
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        if self.command != "POST":
            return query
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        body = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype and body:
            res = parse_json(body, source="request", max_bytes=MAX_BODY)
            for p in res.get("parameter") or []:
                value = next((v for k, v in p.items() if k.startswith("value")), None)
                if isinstance(value, (str, bool, int)):
                    query[p.get("name", "")] = str(value)
                elif isinstance(value, dict) and p.get("name") == "coding":
                    query.setdefault("system", value.get("system", ""))
                    query.setdefault("code", value.get("code", ""))
        elif body:
            query.update({k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()})
        return query

    def _serve(self) -> None:
        standin = self.server.standin
        path = urlsplit(self.path).path
        try:
            params = self._params()
        except (ValueError, AttributeError, UnsafeInput):
            self._send(400, _outcome("invalid", "unreadable request body"))
            return
        if path == "/token" and self.command == "POST":
            standin.requests["token"] += 1
            self._send(*standin._issue_token(params))
            return
        if not path.startswith("/fhir/"):
            self._send(404, _outcome("not-found", "the FHIR base is /fhir/"))
            return
        op = path[len("/fhir/"):].strip("/")
        standin.requests[op] += 1
        if op != "metadata" and not self._authorised_or_401():
            return
        if standin.latency:
            time.sleep(standin.latency)
        if "slow" in standin.faults:
            time.sleep(standin.delay or 5.0)
        if "cut" in standin.faults:
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if "error500" in standin.faults:
            self._send(500, _outcome("exception", "simulated failure"))
            return
        if "garbage" in standin.faults:
            self._send(200, None, raw=b"<html>502 Bad Gateway</html>\x00\xff")
            return
        self._send(*standin.answer(op, params))

    def _authorised_or_401(self) -> bool:
        if self.server.standin._authorised(self.headers.get("Authorization")):
            return True
        self._send(401, _outcome("login", "bearer token missing or refused"))
        return False

    do_GET = _serve
    do_POST = _serve
