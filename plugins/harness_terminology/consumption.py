"""How the software itself consumes the national terminology server (SMT): what it asks, and
what it concludes when the server cannot answer.

Target file::

    [terminology]
    server = "service://terminology/fhir/"   # the stand-in: it records what it is asked
    [endpoints]
    smt_check = "..."   # POST {"fhir": base URL} asks the software to do what its user interface
                        # does with the terminology (check a code, list a value set, show a
                        # display); it answers {"results": [{"question": ..., "conclusion":
                        # "valid" | "invalid" | "unverified", ...}]}

Three phases. Answering, the software asked twice: ``ValueSet/$validate-code`` answered with
``Cache-Control: no-store``, the other operations with ``max-age=1``, and the second round asked
once those answers are stale. Throttling: its first request answered 429 with ``Retry-After: 1``
(the stand-in's ``throttle`` fault). Failing, one way per operation (the stand-in's ``op_faults``):
``ValueSet/$validate-code`` never answered (the connection held silent until the software gives
up, or the stand-in's ``stall`` seconds), ``ValueSet/$expand`` 404 (the value set not found),
``CodeSystem/$lookup`` 503, any other 500. Every request the software sent in each phase is
recorded with its operation, parameters, language, client, the fault or the cache header it was
answered with and how long a silent server was waited for, and the software's conclusions with
them.

Rules (``terminology.consumption``, requirement SMT-USE), each with its source:

- SMT-USE-01: a value set is named by the canonical URL the server publishes (FHIR R4
  ``ValueSet/$validate-code`` and ``$expand``: ``url`` is the value set's canonical URL, which
  the server must know; the NOS publishes each JDV under ``https://mos.esante.gouv.fr/NOS/…``);
  an OID or a NOS name is not one, whatever a lenient server accepts;
- SMT-USE-02: each operation with the parameters FHIR R4 defines for it (``$validate-code``:
  ``url`` and ``code`` with ``system``, or ``coding``/``codeableConcept``; ``$lookup``:
  ``system`` and ``code``, or ``coding``; ``$expand``: ``url``), as the ANS documents the SMT's
  use (``CodeSystem/$lookup?system=…&code=…``: ansforge/finess, docs/referentiels/terminologies-smt.md;
  the ANS's Postman collection « ANS SMT Service FHIR de terminologies de santé »);
- SMT-USE-03: displays asked in French (``displayLanguage`` or ``Accept-Language``, FHIR R4
  terminology service: what a user of a French software reads is the French display; the SMT
  answers ``fr-FR`` designations);
- SMT-USE-04: while the server fails (no answer, 404 on the value set, 503, 500), no question is
  concluded ``valid`` or ``invalid`` (nothing invented: the software says it could not check);
- SMT-USE-05: told to wait (429 with ``Retry-After``: RFC 6585 4, RFC 9110 10.2.3), the software
  does not ask the same operation again before the delay;
- SMT-USE-06: an answer is not reused beyond what its headers allow (RFC 9111 5.2.2.5
  ``no-store``: never; 4.2 and 5.2.2.1 ``max-age``: not once stale): asked again the next time;
- SMT-USE-07 (warning): a server that does not answer is given up by the software itself, within
  the stand-in's ``stall`` seconds (``[services.terminology] stall``, 8 by default): a wait
  without a deadline of its own holds its user; no national text sets the figure, so it is a
  setting, said in the finding, and a warning, not a failure.

Only our stand-in can say what it was asked: against the real SMT (no recording proxy in this
version), the scenario is not applicable, and says so. What the real SMT sends in
``Cache-Control`` is not documented in what could be read here: the headers above are the
stand-in's, chosen to exercise each rule.
"""
from __future__ import annotations

import json
import time

from harness import (CheckContext, CollectContext, Evaluation, HarnessError, NotApplicable, Severity, Text, UnsafeInput, catalogue, check, collector,
                     parse_json)

M = catalogue(__name__)
SESSION = "smt.consumption"
SETTLE, QUIET = 0.3, 3.0
VALUE_SET_OPS = ("ValueSet/$validate-code", "ValueSet/$expand")
FRENCH = ("fr", "fr-fr")
MAX_ANSWER = 1024 * 1024  # bytes of what the software answers the harness


def _published(server, url: str) -> bool:
    """Whether ``url`` is the canonical URL of a value set the server publishes."""
    return any(vs.url == url.split("|")[0] for vs in server.terminology.snapshot.value_sets)


@collector(produces=[SESSION, "smt-check-answering.exchange", "smt-check-answering-2.exchange", "smt-check-throttled.exchange",
                     "smt-check-failing.exchange"], once_per_run=True)
def collect_consumption(ctx: CollectContext) -> dict:
    from harness.terminology import TerminologyServer

    endpoint = ctx.endpoint("smt_check")
    if endpoint is None:
        raise NotApplicable(M("use.no_endpoint"))
    setup = ctx.terminology()
    server = TerminologyServer.running(setup.remote.base) if setup.remote is not None else None
    if server is None:
        raise NotApplicable(M("use.not_standin"))
    outputs: dict = {}
    phases = []
    saved = set(server.faults), dict(server.op_faults), server.cache_control, server.stall
    # the harness waits for the software's answer at most its read timeout ([network] read_timeout, 10 s by
    # default): a silent server is held for less, whatever the stand-in's setting
    stall = min(server.stall, max(1.0, float(ctx.target.section("network").get("read_timeout", 10)) - 2))
    try:
        for phase in PHASES:
            server.faults, server.op_faults, server.throttled = set(phase["faults"]), dict(phase["op_faults"]), False
            server.cache_control, server.stall = dict(phase["cache_control"]), stall
            record = {"phase": phase["phase"], "faults": sorted(phase["faults"]), "op_faults": dict(phase["op_faults"]),
                      "cache_control": dict(phase["cache_control"]), "stall": stall, "asked": [], "rounds": [],
                      "retry_after": float(server.retry_after) if "throttle" in phase["faults"] else None}
            ended = 0.0
            for n in range(1, phase["rounds"] + 1):
                if n > 1:  # the answers of the round before are stale by now (max-age)
                    time.sleep(max(0.0, ended + MAX_AGE + 0.05 - time.monotonic()))
                first, first_connection = len(server.journal.exchanges), len(server.journal.connections)
                label = f"smt-check-{phase['phase']}" + (f"-{n}" if n > 1 else "")
                started = _now()
                res = ctx.http.post(endpoint, label=label, body=json.dumps({"fhir": server.base_url}).encode(), headers={"Content-Type": "application/json"})
                outputs[f"{label}.exchange"] = res.exchange
                if not res.ok:
                    raise HarnessError(M("use.refused", url=endpoint, status=res.status, said=res.error or res.data[:200].decode("utf-8", "replace")))
                ended = time.monotonic()
                server.wait_quiet(after=first_connection, quiet=SETTLE, deadline=time.monotonic() + QUIET)
                try:
                    answer = parse_json(res.data, source=label, max_bytes=MAX_ANSWER)
                except UnsafeInput:
                    answer = None
                asked = [_asked(server, ex) for ex in server.journal.exchanges[first:] if _software(ex)]
                record["asked"] += asked
                record["rounds"].append({"round": n, "started": started, "asked": [a["n"] for a in asked],
                                         "results": answer.get("results") if isinstance(answer, dict) and isinstance(answer.get("results"), list) else None})
            record["results"] = record["rounds"][-1]["results"]
            phases.append(record)
    finally:
        server.faults, server.op_faults, server.cache_control, server.stall = saved
    outputs[SESSION] = ctx.record_json({"server": server.base_url, "phases": phases}, label=SESSION)
    return outputs


MAX_AGE = 1  # seconds: the freshness the answering phase gives its cacheable answers
# each phase: the stand-in's faults (for every operation, and per operation), its Cache-Control
# per operation ("*": the others), and how many times the software is asked
PHASES = (
    {"phase": "answering", "faults": (), "op_faults": {}, "rounds": 2,
     "cache_control": {"ValueSet/$validate-code": "no-store", "*": f"max-age={MAX_AGE}"}},
    {"phase": "throttled", "faults": ("throttle",), "op_faults": {}, "rounds": 1, "cache_control": {"*": "no-store"}},
    {"phase": "failing", "faults": ("error500",), "rounds": 1, "cache_control": {"*": "no-store"},
     "op_faults": {"ValueSet/$validate-code": "stall", "ValueSet/$expand": "not-found", "CodeSystem/$lookup": "error503"}},
)


def _software(ex) -> bool:
    """A request of the software's (the harness's own terminology questions are not)."""
    return bool(ex.facts.get("op")) and "ehealth-conformity-harness" not in str(ex.facts.get("user_agent") or "")


def _asked(server, ex) -> dict:
    f = ex.facts
    return {"n": ex.n, "at": ex.at, "method": ex.method, "path": ex.path[:2000], "http_status": ex.http_status, "op": f["op"],
            "params": f.get("params", {}), "accept_language": f.get("accept_language"),
            "published": [_published(server, str(u)) for u in f.get("params", {}).get("url", [])],
            "fault": f.get("fault"), "cache_control": f.get("cache_control"), "held": f.get("held"), "ended_by": f.get("ended_by")}


def _where(phase: str, a: dict) -> str:
    return f"{SESSION} {phase}/{a['n']:03d} {a['method']} {a['op']}"


def _has(params: dict, *names: str) -> bool:
    return all(params.get(n) not in (None, [], [""]) for n in names)


@check(reads=[SESSION])
def check_consumption(ctx: CheckContext, ev: Evaluation) -> None:
    if not ctx.has(SESSION):
        ev.error(M("use.no_session"))
        return
    record = ctx.json(SESSION)
    phases = {p["phase"]: p for p in record["phases"]}
    answering = phases.get("answering", {"asked": [], "results": None})
    if not answering["asked"]:
        ev.inconclusive(M("use.nothing_asked"))
        return
    for phase in record["phases"]:
        for a in phase["asked"]:
            op, params = a["op"], a["params"]
            if op in VALUE_SET_OPS:
                urls = [str(u) for u in params.get("url", [])]
                ev.check(bool(urls) and all(a["published"]), rule="SMT-USE-01", location=_where(phase["phase"], a),
                         message=M("use.canonical", url=Text.same(", ".join(urls) or "-")))
            needed = {"ValueSet/$validate-code": (("url", "code", "system"), ("url", "coding"), ("url", "codeableConcept")),
                      "CodeSystem/$validate-code": (("code", "system"), ("coding",)), "CodeSystem/$lookup": (("code", "system"), ("coding",)),
                      "ValueSet/$expand": (("url",),)}.get(op)
            if needed is not None:
                ev.check(any(_has(params, *names) for names in needed), rule="SMT-USE-02", location=_where(phase["phase"], a),
                         message=M("use.parameters", op=op, given=Text.same(", ".join(sorted(params)) or "-")))
            if op in ("CodeSystem/$lookup", "ValueSet/$expand", "ValueSet/$validate-code"):
                language = str((params.get("displayLanguage") or [""])[0] or a.get("accept_language") or "").lower()
                ev.check(language.split(",")[0].split(";")[0].strip() in FRENCH, rule="SMT-USE-03", location=_where(phase["phase"], a),
                         message=M("use.language", op=op, language=Text.same(language or "-")))
    # RFC 9111: what round 1 was answered is asked again in round 2 when its headers did not
    # allow it to be reused then (no-store: never, 5.2.2.5; max-age: not once stale, 4.2)
    rounds = answering.get("rounds") or []
    if len(rounds) == 2:
        by_n = {a["n"]: a for a in answering["asked"]}
        again = {by_n[n]["op"] for n in rounds[1]["asked"] if n in by_n}
        for op, a in sorted({by_n[n]["op"]: by_n[n] for n in rounds[0]["asked"] if n in by_n and by_n[n]["http_status"] == 200}.items()):
            control = str(a.get("cache_control") or "")
            age = _seconds(a["at"], rounds[1]["started"])
            if not _reusable(control, age):
                ev.check(op in again, rule="SMT-USE-06", location=f"{SESSION} answering round 2",
                         message=M("use.stored", op=op, control=Text.same(control or "-"), age=f"{age:.1f}"))
    # 429 with Retry-After (RFC 6585 4, RFC 9110 10.2.3): the same operation not asked again before the delay
    throttled = phases.get("throttled")
    if throttled is not None:
        asked, wait = throttled["asked"], throttled["retry_after"]
        for i, a in enumerate(asked):
            if a["http_status"] != 429:
                continue
            early = [b for b in asked[i + 1:] if b["op"] == a["op"] and _seconds(a["at"], b["at"]) < wait]
            ev.check(not early, rule="SMT-USE-05", location=_where("throttled", a),
                     message=M("use.retry", op=a["op"], seconds=f"{min((_seconds(a['at'], b['at']) for b in early), default=0):.2f}", wait=wait))
    failing = phases.get("failing")
    if failing is None or failing["results"] is None:
        ev.inconclusive(M("use.no_conclusions"))
        return
    met = ", ".join(f"{a['op']}: {FAILURES.get(str(a.get('fault')), a.get('fault') or a['http_status'])}" for a in failing["asked"]) or "-"
    for n, r in enumerate(failing["results"]):
        conclusion = str((r or {}).get("conclusion") or "")
        ev.check(conclusion not in ("valid", "invalid"), rule="SMT-USE-04", location=f"smt-check-failing results[{n}]",
                 message=M("use.invented", question=Text.same(str((r or {}).get("question") or "-")[:200]), conclusion=Text.same(conclusion),
                           failures=Text.same(met)))
    if not failing["asked"]:
        ev.add(rule="SMT-USE-04", severity=Severity.WARNING, location=f"{SESSION} failing", message=M("use.not_asked"))
    # a silent server: the software ends the wait itself
    for a in failing["asked"]:
        if a.get("fault") == "stall" and a.get("held") is not None:
            ev.check(a.get("ended_by") == "client", rule="SMT-USE-07", location=_where("failing", a), severity=Severity.WARNING,
                     message=M("use.no_timeout", op=a["op"], seconds=f"{float(a['held']):.1f}", stall=failing.get("stall")))


# what each fault of the failing phase does, as the finding says it
FAILURES = {"stall": "no answer", "not-found": "404", "error503": "503", "error500": "500", "cut": "connection cut"}


def _reusable(control: str, age: float) -> bool:
    """Whether an answer with this Cache-Control may still be reused ``age`` seconds later
    (RFC 9111: never with no-store or no-cache, while fresh with max-age; without either, a
    cache may choose a heuristic freshness, 4.2.2, so nothing is required)."""
    directives = {d.split("=", 1)[0].strip().lower(): d.split("=", 1)[1].strip() if "=" in d else "" for d in control.split(",") if d.strip()}
    if "no-store" in directives or "no-cache" in directives:
        return False
    if "max-age" in directives:
        try:
            return age < int(directives["max-age"])
        except ValueError:
            return False  # an invalid max-age is stale (RFC 9111 4.2.1)
    return True


def _now() -> str:
    """Now, in the stand-in journal's own format."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds(earlier: str, later: str) -> float:
    from datetime import datetime

    parse = lambda t: datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731 (the journal's own format)
    return (parse(later) - parse(earlier)).total_seconds()
