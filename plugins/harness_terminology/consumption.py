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

Three phases, every answer marked ``Cache-Control: no-store``: the server answering (the software
asked twice), then throttling (its first request answered 429 with ``Retry-After: 1``), then failing
(HTTP 500 on every operation, the stand-in's ``error500`` fault). Every request the software sent in each phase is recorded with its
operation, parameters, language and client, and the software's conclusions with them.

Rules (``terminology.consumption``, requirement SMT-USE), each with its source:

- SMT-USE-01: a value set is named by the canonical URL the server publishes (FHIR R4
  ``ValueSet/$validate-code`` and ``$expand``: ``url`` is the value set's canonical URL, which
  the server must know; the NOS publishes each JDV under ``https://mos.esante.gouv.fr/NOS/…``);
  an OID or a NOS name is not one, whatever a lenient server accepts;
- SMT-USE-02: each operation with the parameters FHIR R4 defines for it (``$validate-code``:
  ``url`` and ``code`` with ``system``, or ``coding``/``codeableConcept``; ``$lookup``:
  ``system`` and ``code``, or ``coding``; ``$expand``: ``url``);
- SMT-USE-03: displays asked in French (``displayLanguage`` or ``Accept-Language``, FHIR R4
  terminology service: what a user of a French software reads is the French display);
- SMT-USE-04: while the server fails, no question is concluded ``valid`` or ``invalid`` (nothing
  invented: the software says it could not check);
- SMT-USE-05: told to wait (429 with ``Retry-After``: RFC 6585 4, RFC 9110 10.2.3), the software
  does not ask the same operation again before the delay;
- SMT-USE-06: answers marked ``Cache-Control: no-store`` (RFC 9111 5.2.2.5) are asked again the
  next time, never served from a store.

Only our stand-in can say what it was asked: against the real SMT (no recording proxy in this
version), the scenario is not applicable, and says so.
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
    saved = set(server.faults), server.cache_control
    try:
        for phase, faults, rounds in PHASES:
            server.faults, server.cache_control, server.throttled = set(faults), "no-store", False
            record = {"phase": phase, "faults": sorted(faults), "cache_control": "no-store", "asked": [], "rounds": [],
                      "retry_after": float(server.retry_after) if "throttle" in faults else None}
            for n in range(1, rounds + 1):
                first, first_connection = len(server.journal.exchanges), len(server.journal.connections)
                label = f"smt-check-{phase}" + (f"-{n}" if n > 1 else "")
                res = ctx.http.post(endpoint, label=label, body=json.dumps({"fhir": server.base_url}).encode(), headers={"Content-Type": "application/json"})
                outputs[f"{label}.exchange"] = res.exchange
                if not res.ok:
                    raise HarnessError(M("use.refused", url=endpoint, status=res.status, said=res.error or res.data[:200].decode("utf-8", "replace")))
                server.wait_quiet(after=first_connection, quiet=SETTLE, deadline=time.monotonic() + QUIET)
                try:
                    answer = parse_json(res.data, source=label, max_bytes=MAX_ANSWER)
                except UnsafeInput:
                    answer = None
                asked = [_asked(server, ex) for ex in server.journal.exchanges[first:] if _software(ex)]
                record["asked"] += asked
                record["rounds"].append({"round": n, "asked": [a["n"] for a in asked],
                                         "results": answer.get("results") if isinstance(answer, dict) and isinstance(answer.get("results"), list) else None})
            record["results"] = record["rounds"][-1]["results"]
            phases.append(record)
    finally:
        server.faults, server.cache_control = saved
    outputs[SESSION] = ctx.record_json({"server": server.base_url, "phases": phases}, label=SESSION)
    return outputs


# (phase, the stand-in's faults, how many times the software is asked): every answer says
# ``Cache-Control: no-store``; the first phase asks twice (a stored answer would not be asked again)
PHASES = (("answering", (), 2), ("throttled", ("throttle",), 1), ("failing", ("error500",), 1))


def _software(ex) -> bool:
    """A request of the software's (the harness's own terminology questions are not)."""
    return bool(ex.facts.get("op")) and "ehealth-conformity-harness" not in str(ex.facts.get("user_agent") or "")


def _asked(server, ex) -> dict:
    f = ex.facts
    return {"n": ex.n, "at": ex.at, "method": ex.method, "path": ex.path[:2000], "http_status": ex.http_status, "op": f["op"],
            "params": f.get("params", {}), "accept_language": f.get("accept_language"),
            "published": [_published(server, str(u)) for u in f.get("params", {}).get("url", [])]}


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
    # no-store (RFC 9111 5.2.2.5): what round 1 asked is asked again in round 2, not served from a store
    rounds = answering.get("rounds") or []
    if len(rounds) == 2:
        by_n = {a["n"]: a for a in answering["asked"]}
        again = {by_n[n]["op"] for n in rounds[1]["asked"] if n in by_n}
        for op in sorted({by_n[n]["op"] for n in rounds[0]["asked"] if n in by_n and by_n[n]["http_status"] == 200}):
            ev.check(op in again, rule="SMT-USE-06", location=f"{SESSION} answering round 2", message=M("use.stored", op=op))
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
    for n, r in enumerate(failing["results"]):
        conclusion = str((r or {}).get("conclusion") or "")
        ev.check(conclusion not in ("valid", "invalid"), rule="SMT-USE-04", location=f"smt-check-failing results[{n}]",
                 message=M("use.invented", question=Text.same(str((r or {}).get("question") or "-")[:200]), conclusion=Text.same(conclusion)))
    if not failing["asked"]:
        ev.add(rule="SMT-USE-04", severity=Severity.WARNING, location=f"{SESSION} failing", message=M("use.not_asked"))


def _seconds(earlier: str, later: str) -> float:
    from datetime import datetime

    parse = lambda t: datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731 (the journal's own format)
    return (parse(later) - parse(earlier)).total_seconds()
