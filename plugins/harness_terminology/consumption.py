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

Two phases: the server answering, then failing (HTTP 500 on every operation, the stand-in's
``error500`` fault). Every request the software sent in each phase is recorded with its
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
  invented: the software says it could not check).

Only our stand-in can say what it was asked: against the real SMT (no recording proxy in this
version), the scenario is not applicable, and says so.
"""
from __future__ import annotations

import json
import time

from harness import CheckContext, CollectContext, Evaluation, HarnessError, NotApplicable, Severity, Text, catalogue, check, collector

M = catalogue(__name__)
SESSION = "smt.consumption"
SETTLE, QUIET = 0.3, 3.0
VALUE_SET_OPS = ("ValueSet/$validate-code", "ValueSet/$expand")
FRENCH = ("fr", "fr-fr")


def _published(server, url: str) -> bool:
    """Whether ``url`` is the canonical URL of a value set the server publishes."""
    return any(vs.url == url.split("|")[0] for vs in server.terminology.snapshot.value_sets)


@collector(produces=[SESSION, "smt-check-answering.exchange", "smt-check-failing.exchange"], once_per_run=True)
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
    saved = set(server.faults)
    try:
        for phase, faults in (("answering", set()), ("failing", {"error500"})):
            server.faults = faults
            first, first_connection = len(server.journal.exchanges), len(server.journal.connections)
            res = ctx.http.post(endpoint, label=f"smt-check-{phase}", body=json.dumps({"fhir": server.base_url}).encode(),
                                headers={"Content-Type": "application/json"})
            outputs[f"smt-check-{phase}.exchange"] = res.exchange
            if not res.ok:
                raise HarnessError(M("use.refused", url=endpoint, status=res.status, said=res.error or res.data[:200].decode("utf-8", "replace")))
            server.wait_quiet(after=first_connection, quiet=SETTLE, deadline=time.monotonic() + QUIET)
            try:
                answer = json.loads(res.data[:1024 * 1024])
            except ValueError:
                answer = None
            asked = []
            for ex in server.journal.exchanges[first:]:
                f = ex.facts
                if not f.get("op") or "ehealth-conformity-harness" in str(f.get("user_agent") or ""):
                    continue  # the harness's own questions are not the software's
                asked.append({"n": ex.n, "at": ex.at, "method": ex.method, "path": ex.path[:2000], "http_status": ex.http_status, "op": f["op"],
                              "params": f.get("params", {}), "accept_language": f.get("accept_language"),
                              "published": [_published(server, str(u)) for u in f.get("params", {}).get("url", [])]})
            phases.append({"phase": phase, "faults": sorted(faults), "asked": asked,
                           "results": answer.get("results") if isinstance(answer, dict) and isinstance(answer.get("results"), list) else None})
    finally:
        server.faults = saved
    outputs[SESSION] = ctx.record_json({"server": server.base_url, "phases": phases}, label=SESSION)
    return outputs


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
