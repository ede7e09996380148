"""A FHIR R4 terminology server (the national SMT, or our loopback stand-in) as a
:class:`TerminologyService`.

Operations: ``ValueSet/$validate-code``, ``CodeSystem/$lookup`` (with
``CodeSystem/$validate-code`` to tell an unknown code from an unanswerable question),
``ValueSet/$expand`` and ``ConceptMap/$translate``.

Authentication: a bearer token from the identity provider (the ANS Keycloak, password
grant, client ``user-api``), fetched when first needed, renewed before it expires and
once after a 401. Credentials reach this module as values already resolved from
``env:``/``file:`` references; they are never logged nor recorded.

Failures are typed, so that the caller can decide: :class:`TerminologyUnavailable`
(unreachable, timeout, HTTP 5xx after the retries, an answer that is not FHIR) may fall
back to a snapshot when the user allowed it; :class:`TerminologyAuthError` (the token
refused) never does: it is a configuration problem the user must fix.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable
from urllib.parse import urlsplit

from urllib3.util.retry import Retry

from ..errors import HarnessError, UnsafeInput
from ..safety.http import Fetched, HttpClient
from ..safety.inputs import parse_json
from ..secrets import Scrubber
from ..messages import Localized, catalogue
from .model import Answer, Expansion, error_record

M = catalogue(__name__)

USER_AGENT = "ehealth-conformity-harness (terminology)"
MAX_ANSWER = 32 * 1024 * 1024


class TerminologyUnavailable(HarnessError):
    """The server could not answer (down, slow, 5xx, garbage): ``kind`` says which."""

    def __init__(self, kind: str, detail: Localized) -> None:
        super().__init__(detail)
        self.kind = kind


class TerminologyAuthError(HarnessError):
    """The identity provider or the server refused our credentials."""


class PasswordGrant:
    """OAuth2 password grant (Keycloak): ``access_token`` cached until shortly before expiry."""

    def __init__(self, token_url: str, client_id: str, username: str, password: str, *, timeout: float, offline: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._username = username
        self._password = password
        # the whole exchange within the timeout; the password never reaches an error message
        self._client = HttpClient(total=timeout, max_bytes=1024 * 1024, offline=offline, scrub=Scrubber([password]).text)
        self._clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()
        self.fetched = 0

    def token(self, renew: bool = False) -> str:
        with self._lock:
            if renew or self._token is None or self._clock() >= self._expires:
                self._fetch()
            assert self._token is not None
            return self._token

    def _fetch(self) -> None:
        form = {"grant_type": "password", "client_id": self.client_id, "username": self._username, "password": self._password}
        res = self._client.request("POST", self.token_url, data=form)
        if res.failure == "timeout":
            raise TerminologyUnavailable("timeout", M("idp.timeout", url=self.token_url))
        if res.failure is not None:
            raise TerminologyUnavailable("unreachable", M("idp.unreachable", url=self.token_url, error=res.error))
        if res.status in (400, 401, 403):
            raise TerminologyAuthError(M("idp.refused", url=self.token_url, status=res.status, detail=_error_text(res.body)))
        if res.status is None or res.status >= 500:
            raise TerminologyUnavailable("http", M("idp.failed", status=res.status))
        try:
            body = parse_json(res.body, source=self.token_url)
            token = body["access_token"]
            assert isinstance(token, str) and token
        except (UnsafeInput, KeyError, TypeError, AssertionError):
            raise TerminologyUnavailable("garbage", M("idp.garbage")) from None
        lifetime = body.get("expires_in") if isinstance(body.get("expires_in"), (int, float)) else 300
        self._token = token
        self._expires = self._clock() + max(5.0, float(lifetime) - 30.0)
        self.fetched += 1


def _error_text(data: bytes) -> str:
    """What an identity provider or a FHIR server said when refusing."""
    try:
        body = parse_json(data)
    except UnsafeInput:
        return ""
    if isinstance(body, dict) and body.get("resourceType") != "OperationOutcome":
        return str(body.get("error_description") or body.get("error") or "")[:200]
    return _diag(body)


def _params(body: Any) -> dict[str, list[dict]]:
    """A FHIR ``Parameters`` resource as name -> parts (raises ValueError otherwise)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise ValueError("Parameters expected")
    out: dict[str, list[dict]] = {}
    for p in body.get("parameter") or []:
        if isinstance(p, dict) and isinstance(p.get("name"), str):
            out.setdefault(p["name"], []).append(p)
    return out


def _value(parts: list[dict] | None) -> Any:
    if not parts:
        return None
    for k, v in parts[0].items():
        if k.startswith("value"):
            return v
    return None


class RemoteTerminology:
    """The FHIR terminology client. One per run; thread-safe for reads."""

    def __init__(self, base_url: str, *, auth: PasswordGrant | None = None, timeout: float = 10.0, retries: int = 2,
                 backoff: float = 0.5, offline: bool = False) -> None:
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise HarnessError(M("server.invalid_address", url=base_url))
        self.base = base_url.rstrip("/") + "/"
        self.timeout = timeout
        retry = Retry(total=retries, connect=retries, read=retries, status=retries, other=0, backoff_factor=backoff,
                      status_forcelist=(429, 500, 502, 503, 504), allowed_methods=None, raise_on_status=False,
                      respect_retry_after_header=True)
        # each question's whole exchange, retries and back-off included, ends within this
        total = timeout * (retries + 1) + backoff * (2 ** retries)
        self.client = HttpClient(total=total, read=timeout, max_bytes=MAX_ANSWER, offline=offline, retries=retry,
                                 headers={"User-Agent": USER_AGENT, "Accept": "application/fhir+json, application/json"})
        self.auth = auth
        self.calls = 0  # HTTP requests sent to the FHIR server (retries included by urllib3 are not counted)
        self._server: dict[str, Any] | None = None
        self._server_lock = threading.Lock()
        self._identity_asked = 0  # requests for the identity so far
        self._identity_failure: TerminologyUnavailable | None = None  # how the last one failed
        self._systems_not_held: set[str] = set()  # code systems the server said it does not hold

    # -- transport ----------------------------------------------------------------------

    def _failed(self, res: Fetched, url: str) -> TerminologyUnavailable:
        if res.failure == "timeout":
            return TerminologyUnavailable("timeout", M("server.timeout", seconds=self.timeout, url=url))
        if res.failure == "too-large":
            return TerminologyUnavailable("garbage", M("server.too_large", limit=MAX_ANSWER, url=url))
        return TerminologyUnavailable("unreachable", M("server.unreachable", url=url, error=res.error))

    def _get(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        url = self.base + path
        for attempt in (0, 1):
            headers = {}
            if self.auth is not None:
                headers["Authorization"] = f"Bearer {self.auth.token(renew=attempt == 1)}"
            self.calls += 1
            res = self.client.request("GET", url, params=params, headers=headers)
            if res.failure is not None:
                raise self._failed(res, url)
            if res.status in (401, 403):
                if attempt == 0 and self.auth is not None and res.status == 401:
                    continue  # the token may have expired early: renew once
                raise TerminologyAuthError(M("server.refused", status=res.status, url=url))
            if res.status >= 500 or res.status == 429:
                raise TerminologyUnavailable("http", M("server.failed", status=res.status, url=url))
            if 300 <= res.status < 400:  # never followed: it could lead out of loopback, or off the server
                raise TerminologyUnavailable("http", M("server.redirect", status=res.status, url=url, location=res.headers.get("Location", "-")))
            try:
                body = parse_json(res.body, source=url)
            except UnsafeInput:
                raise TerminologyUnavailable("garbage", M("server.garbage", status=res.status, url=url)) from None
            return res.status, body
        raise AssertionError("unreachable")

    def _garbage(self, what: str) -> TerminologyUnavailable:
        return TerminologyUnavailable("garbage", M("server.unexpected", what=what))

    # -- identity -----------------------------------------------------------------------

    def server(self) -> dict[str, Any]:
        """The server's identity from ``/metadata`` (software, version, FHIR version), once.

        One request at a time; the questions that waited for it share its outcome, a failure
        included (asked again by a later question only): a server that never answers costs
        one timeout for all the questions in flight, not one each, one after the other, past
        the scenario's deadline."""
        asked_before = self._identity_asked
        with self._server_lock:
            if self._server is None and self._identity_failure is not None and self._identity_asked != asked_before:
                raise self._identity_failure  # the request this question waited for failed
            return self._server_identity()

    def _server_identity(self) -> dict[str, Any]:
        if self._server is None:
            self._identity_asked += 1
            try:
                status, body = self._get("metadata", {})
                if status != 200 or not isinstance(body, dict) or body.get("resourceType") != "CapabilityStatement":
                    raise self._garbage("metadata")
            except TerminologyUnavailable as exc:
                self._identity_failure = exc
                raise
            software = body.get("software") if isinstance(body.get("software"), dict) else {}
            self._server = {"kind": "remote", "server": self.base, "software": software.get("name"),
                            "version": software.get("version"), "fhir": body.get("fhirVersion")}
        return self._server

    def source(self) -> dict[str, Any]:
        return dict(self.server())

    # -- operations ---------------------------------------------------------------------

    def validate_code(self, value_set: str, system: str, code: str) -> Answer:
        q = {"value_set": value_set, "system": system, "code": code}
        source = self.source()
        status, body = self._get("ValueSet/$validate-code", {"url": value_set, "system": system, "code": code})
        if status in (400, 404, 422):
            return Answer("validate-code", q, None, source=source, error=error_record("unknown-value-set", M("server.cannot_answer", diagnostic=_diag(body))))
        try:
            p = _params(body)
            result = _value(p.get("result"))
            if not isinstance(result, bool):
                raise ValueError("result")
        except ValueError:
            raise self._garbage("$validate-code") from None
        if result is False and _cannot_say(p):
            return Answer("validate-code", q, None, source=source, error=error_record(
                "code-system-not-held", M("server.cannot_answer", diagnostic=str(_value(p.get("message")) or "")[:300])))
        inactive = _value(p.get("inactive"))
        return Answer("validate-code", q, result, display=_value(p.get("display")), message=_value(p.get("message")),
                      inactive=inactive if isinstance(inactive, bool) else None, source=source)

    def lookup(self, system: str, code: str) -> Answer:
        q = {"system": system, "code": code}
        source = self.source()
        status, body = self._get("CodeSystem/$lookup", {"system": system, "code": code})
        if status == 200:
            try:
                p = _params(body)
            except ValueError:
                raise self._garbage("$lookup") from None
            inactive = None
            for prop in p.get("property") or []:
                parts = {x.get("name"): x for x in prop.get("part") or [] if isinstance(x, dict)}
                name = (parts.get("code") or {}).get("valueCode")
                value = parts.get("value") or {}
                if name == "inactive" and isinstance(value.get("valueBoolean"), bool):
                    inactive = value["valueBoolean"]
                elif name == "status" and value.get("valueCode"):
                    inactive = str(value["valueCode"]).lower() in ("retired", "deprecated", "inactive")
            return Answer("lookup", q, True, display=_value(p.get("display")), inactive=inactive, source=source)
        if status in (400, 404, 422):
            # Unknown code, or unknown system? CodeSystem/$validate-code says which (once
            # per system the server does not hold: it will not hold it for the next code).
            if system in self._systems_not_held:
                return self._not_held(q, source, body)
            status2, body2 = self._get("CodeSystem/$validate-code", {"url": system, "code": code})
            if status2 == 200:
                try:
                    result = _value(_params(body2).get("result"))
                except ValueError:
                    raise self._garbage("CodeSystem/$validate-code") from None
                if result is False and _cannot_say(_params(body2)):
                    self._systems_not_held.add(system)  # held in part only: it cannot say for the next code either
                elif result is False:
                    return Answer("lookup", q, False, message=_diag(body) or _value(_params(body2).get("message")), source=source)
            elif status2 in (400, 404, 422):
                self._systems_not_held.add(system)
            return self._not_held(q, source, body)
        raise self._garbage("$lookup")

    @staticmethod
    def _not_held(q: dict, source: dict, body: Any) -> Answer:
        return Answer("lookup", q, None, source=source, error=error_record("code-system-not-held", M("server.system_not_held", diagnostic=_diag(body))))

    def expand(self, value_set: str) -> Expansion:
        status, body = self._get("ValueSet/$expand", {"url": value_set})
        if status != 200 or not isinstance(body, dict) or body.get("resourceType") != "ValueSet":
            raise HarnessError(M("server.cannot_expand", value_set=value_set, diagnostic=_diag(body)))
        exp = body.get("expansion") or {}
        contains = [{"system": c.get("system", ""), "code": c.get("code", ""), "display": c.get("display", "")}
                    for c in exp.get("contains") or [] if isinstance(c, dict)]
        total = exp.get("total") if isinstance(exp.get("total"), int) else len(contains)
        return Expansion(value_set, contains, total, self.source(), complete=total == len(contains))

    def translate(self, concept_map: str, system: str, code: str) -> Answer:
        q = {"concept_map": concept_map, "system": system, "code": code}
        status, body = self._get("ConceptMap/$translate", {"url": concept_map, "system": system, "code": code})
        if status != 200:
            return Answer("translate", q, None, source=self.source(), error=error_record("unknown-concept-map", M("server.cannot_translate", diagnostic=_diag(body))))
        try:
            p = _params(body)
        except ValueError:
            raise self._garbage("$translate") from None
        matches = []
        for m in p.get("match") or []:  # FHIR R4 ConceptMap/$translate: match.concept, match.equivalence (R5: relationship)
            parts = {x.get("name"): x for x in m.get("part") or [] if isinstance(x, dict)}
            concept = (parts.get("concept") or {}).get("valueCoding") or {}
            relationship = _value([parts["relationship"]]) if "relationship" in parts else _value([parts["equivalence"]]) if "equivalence" in parts else None
            if isinstance(concept, dict) and concept.get("code"):
                matches.append({"system": str(concept.get("system") or ""), "code": str(concept["code"]), "relationship": str(relationship or "equivalent")})
        return Answer("translate", q, bool(_value(p.get("result"))), message=_value(p.get("message")), source=self.source(), matches=matches)

    def describe(self) -> dict[str, Any]:
        return self.source()


def _cannot_say(p: dict[str, list[dict]]) -> bool:
    """A "false" that is no answer: the server does not hold the code system (or the version)
    the question needs (FHIR R5: ``x-caused-by-unknown-system``, ``x-unknown-system``), or it
    is unsure (a fragment it holds only in part)."""
    return bool(p.get("x-caused-by-unknown-system") or p.get("x-unknown-system") or _value(p.get("x-unsure")) is True)


def _diag(body: Any) -> str:
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        issues = body.get("issue") or [{}]
        first = issues[0] if issues and isinstance(issues[0], dict) else {}
        return str(first.get("diagnostics") or (first.get("details") or {}).get("text") or first.get("code") or "")[:300]
    return ""
