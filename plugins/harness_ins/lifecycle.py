"""The identity lifecycle through INSi: the harness asks the software to register people, plays
INSi for it (:mod:`.insi_service`), then judges what the software emits about them afterwards
(HL7 v2, CDA, FHIR: the INS plugin's own readers) against what INSi answered.

Sources: the INS referential (ANS, "Référentiel Identifiant national de santé": the INS is
retrieved or verified through the INSi teleservice; an identity is *récupérée* (RECUP) once
INSi returned it, *qualifiée* (QUAL) once it was also validated on a high-trust identity
document; only a qualified identity's INS may be used and shared) and the RNIV (référentiel
national d'identitovigilance, its statuses PROV, RECUP, VALI, QUAL); the INSi answers and the
conduct they call for (``00`` one identity: take INSi's traits and INS; ``01`` none, ``02``
several: no INS) as the regional identity-vigilance guides state them (e-santé Bretagne, "Les
retours possibles du téléservice INSi") and the public INSi client @padoa/tlsi-ins shows them.
How many times a software may call INSi again when it does not answer is written nowhere public:
``[ins] insi_max_tries`` (default :data:`MAX_TRIES`) is a setting, said so in the findings.

Target file::

    [endpoints]
    insi = "service://insi/"                      # the harness's INSi stand-in
    ins_register = "https://vendor/api/register"   # POST: the people to register (JSON, below)

    [ins]
    insi_max_tries = 3

The request the software receives: ``{"url", "credentials", "patients": [{"ref", "birth_name",
"first_names", "sex", "birth_date", "birth_place"?, "ins"?, "document"}]}`` (``document``: the
high-trust document checked, ``"CNI"``, or empty; ``ins``: the one the person brings); it
answers ``{"registered": [{"ref", "status", "message"}]}`` once it registered them (``message``:
what it told its user). The people are :data:`insi.LIFECYCLE_CASES`; the last is registered
while the stand-in is down.
"""
from __future__ import annotations

import json
from datetime import date

from harness import CheckContext, CollectContext, Evaluation, HarnessError, NotApplicable, Severity, UnsafeInput, catalogue, check, collector, parse_json

from . import insi
from .checks import CHANNEL_INPUTS, READERS, Observation, shown
from .identity import parse_date

M = catalogue(__name__)
MAX_TRIES = 3  # calls to INSi for one registration while it is down (a setting: no public text fixes it)
CHANNEL_READS = tuple(name for names in CHANNEL_INPUTS.values() for name in names)
MAX_ANSWER = 256 * 1024


# -- collecting ---------------------------------------------------------------------------------

@collector(produces=["insi.cases", "insi.session", "insi.answers", "insi-register.exchange", "insi-request", "insi-response"], once_per_run=True)
def collect_register(ctx: CollectContext) -> dict:
    """The software registers the lifecycle's people through the INSi stand-in (asked through
    ``ins_register``), the stand-in up, then down for the last one; every INSi call recorded."""
    from .insi_service import InsiStandIn

    url, register = ctx.endpoint("insi"), ctx.endpoint("ins_register")
    if url is None or register is None:
        raise NotApplicable(M("lc.not_configured", missing=", ".join(n for n, v in (("insi", url), ("ins_register", register)) if v is None)))
    standin = InsiStandIn.running(url)
    if not isinstance(standin, InsiStandIn):
        raise HarnessError(M("lc.not_standin", url=url))
    outputs: dict = {}
    cases = insi.LIFECYCLE_CASES
    outputs["insi.cases"] = ctx.record_json({"cases": [{**c.asked(), "expected": c.expected} for c in cases],
                                             "max_tries": int(ctx.target.section("ins").get("insi_max_tries", MAX_TRIES))},
                                            label="ins.insi-cases")
    first = len(standin.journal.exchanges)
    phases, answers = [], {}
    for phase, group in (("up", [c for c in cases if c.expected != "unavailable"]), ("down", [c for c in cases if c.expected == "unavailable"])):
        before = len(standin.journal.exchanges)
        standin.down = phase == "down"
        try:
            body = json.dumps({"url": standin.base_url, "credentials": str(standin.credentials), "patients": [c.asked() for c in group]})
            res = ctx.http.post(register, label=f"ins.register:{phase}", body=body.encode(), headers={"Content-Type": "application/json"})
        finally:
            standin.down = False
        outputs[f"insi-register.exchange/{phase}"] = res.exchange
        if not res.ok:
            said = res.error or res.data[:200].decode("utf-8", "replace")
            raise HarnessError(M("lc.register_refused", url=register, status=res.status, said=said))
        try:
            answers[phase] = parse_json(res.data, source=register, max_bytes=MAX_ANSWER)
        except UnsafeInput as exc:
            raise HarnessError(M("lc.register_unreadable", url=register, reason=exc.detail)) from None
        phases.append({"phase": phase, "cases": [c.ref for c in group], "first": before, "end": len(standin.journal.exchanges)})
    outputs["insi.answers"] = ctx.record_json(answers, label="ins.insi-answers")
    calls = []
    for ex in standin.journal.exchanges[first:]:
        key = f"{ex.n:03d}"
        phase = next((p["phase"] for p in phases if p["first"] <= ex.n - 1 < p["end"]), "")
        outputs[f"insi-request/{key}"] = ctx.record(ex.request, media_type="application/soap+xml", label=f"ins.insi-request:{key}")
        if ex.response:
            outputs[f"insi-response/{key}"] = ctx.record(ex.response, media_type="application/soap+xml", label=f"ins.insi-response:{key}")
        calls.append({"n": ex.n, "at": ex.at, "phase": phase, "http_status": ex.http_status, **ex.facts})
    outputs["insi.session"] = ctx.record_json({"standin": standin.base_url, "phases": phases, "calls": calls}, label="ins.insi-session")
    return outputs


# -- judging ------------------------------------------------------------------------------------

def _day(text: str | None) -> date | None:
    return parse_date(text)


def _norm(text: str | None) -> str:
    return insi.normalise(text or "")


def _observations(ctx: CheckContext) -> list[Observation]:
    out: list[Observation] = []
    for channel, read in READERS.items():
        out += read(ctx).observations
    return out


class _Case:
    """One registration: what was asked, INSi's answers to it, what the software said and emits."""

    def __init__(self, asked: dict, calls: list[dict], answer: dict | None, observations: list[Observation]) -> None:
        self.asked, self.calls, self.answer, self.observations = asked, calls, answer, observations
        self.ref = asked["ref"]
        found = [c for c in calls if c.get("code") == insi.FOUND and c.get("answer")]
        self.found = found[-1]["answer"] if found else None  # what INSi said of this person (its last 00)
        self.codes = sorted({c["code"] for c in calls if c.get("code")})


def _cases(ctx: CheckContext) -> tuple[list[_Case], dict]:
    cases = ctx.json("insi.cases")
    session = ctx.json("insi.session")
    answers = ctx.json("insi.answers") if ctx.has("insi.answers") else {}
    said = {str(r.get("ref")): r for phase in answers.values() if isinstance(phase, dict)
            for r in (phase.get("registered") or []) if isinstance(r, dict)}
    observations = _observations(ctx)
    out = []
    for asked in cases["cases"]:
        born, sex = _day(asked["birth_date"]), asked["sex"]
        calls = [c for c in session["calls"] if _day((c.get("asked") or {}).get("birth_date")) == born and (c.get("asked") or {}).get("sex") == sex]
        mine = [o for o in observations if _day(o.traits.birth_date) == born and (o.traits.sex or "").upper() == sex]
        out.append(_Case(asked, calls, said.get(asked["ref"]), mine))
    return out, cases


def _where(o: Observation) -> str:
    return f"{o.source} {o.location}"


def _ins(o: Observation) -> list[tuple[str, str]]:
    from .identity import classify_system

    return [(i.value.strip().upper(), classify_system(i.system).oid) for i in o.ins]


@check(reads=("insi.cases", "insi.session", "insi.answers") + CHANNEL_READS)
def check_qualification(ctx: CheckContext, ev: Evaluation) -> None:
    """INSI-01 … INSI-05: what the software emits about each person registered agrees with what
    INSi answered for them, and with whether an identity document was checked."""
    cases, _ = _cases(ctx)
    for case in cases:
        if case.asked["expected"] == "unavailable":
            continue  # judged by check_unavailable (its emissions too)
        _judge_case(ctx, ev, case)


def _judge_case(ctx: CheckContext, ev: Evaluation, case: _Case) -> None:
    if not case.observations:
        ev.inconclusive(M("lc.not_emitted", ref=case.ref, born=case.asked["birth_date"]))
        return
    found = case.found
    active = {(found["active"]["ins"].upper(), found["active"]["oid"])} if found and found.get("active") else set()
    replaced = {h["ins"].upper() for h in (found or {}).get("history", [])}
    for o in case.observations:
        ev.judged()
        status = (o.status or "").upper()
        emitted = _ins(o)
        where = f"{case.ref}: {_where(o)}"
        # INSI-01: RECUP or QUAL, or an INS, only from an INSi answer that gave this INS for these traits
        if status in ("RECUP", "QUAL") or emitted:
            ev.check(found is not None, rule="INSI-01", location=where, artefact=o.artefact,
                     message=M("lc.no_insi_answer", ref=case.ref, status=status or "-", codes=", ".join(case.codes) or "-", calls=len(case.calls)))
        for value, oid in emitted:
            if value in replaced:  # INSI-04: an INS INSi said was replaced
                ev.add(rule="INSI-04", severity=Severity.ERROR, location=where, artefact=o.artefact,
                       message=M("lc.replaced_ins", ref=case.ref, ins=shown(ctx, value), active=shown(ctx, found["active"]["ins"])))
            elif found is not None and (value, oid) not in active:
                ev.add(rule="INSI-01", severity=Severity.ERROR, location=where, artefact=o.artefact,
                       message=M("lc.other_ins", ref=case.ref, ins=shown(ctx, value), oid=oid or "-", active=shown(ctx, found["active"]["ins"]),
                                 active_oid=found["active"]["oid"]))
            if found is None and set(case.codes) & {insi.NONE_FOUND, insi.SEVERAL}:  # INSI-03: no INS from "none" or "several"
                ev.add(rule="INSI-03", severity=Severity.ERROR, location=where, artefact=o.artefact,
                       message=M("lc.ins_without_match", ref=case.ref, ins=shown(ctx, value), codes=", ".join(case.codes)))
        # INSI-02: after a 00, the strict traits are INSi's
        if found is not None:
            differ = _traits_differ(o, found["traits"])
            ev.check(not differ, rule="INSI-02", location=where, artefact=o.artefact,
                     message=M("lc.own_traits", ref=case.ref, traits="; ".join(differ)))
        # INSI-05: qualified only once a high-trust document was checked (the harness said whether it was)
        if status == "QUAL":
            ev.check(bool(case.asked.get("document")), rule="INSI-05", location=where, artefact=o.artefact,
                     message=M("lc.qualified_without_document", ref=case.ref))


def _traits_differ(o: Observation, traits: dict) -> list[str]:
    """The strict traits the software emits that are not INSi's (compared once normalised:
    case, accents and spaces aside, as INSi's own matching)."""
    t = o.traits
    names = traits.get("first_names", "").split()
    pairs = (("birth_name", t.birth_name, traits.get("birth_name")), ("first_given_name", t.first_given_name, names[0] if names else ""),
             ("given_names", " ".join(t.given_names), traits.get("first_names")), ("sex", t.sex, traits.get("sex")),
             ("birth_place", t.birth_place, traits.get("birth_place")))
    out = [f"{name} {got or '-'} ≠ {want or '-'}" for name, got, want in pairs if _norm(got) != _norm(want)]
    if _day(t.birth_date) != _day(traits.get("birth_date")):
        out.append(f"birth_date {t.birth_date or '-'} ≠ {traits.get('birth_date') or '-'}")
    return out


@check(reads=("insi.cases", "insi.session", "insi.answers") + CHANNEL_READS)
def check_unavailable(ctx: CheckContext, ev: Evaluation) -> None:
    """INSI-06: INSi down, the software calls it again a bounded number of times, tells its
    user, and invents nothing (no INS, not RECUP nor QUAL)."""
    cases, conf = _cases(ctx)
    limit = int(conf.get("max_tries", MAX_TRIES))
    judged = False
    for case in cases:
        if case.asked["expected"] != "unavailable":
            continue
        judged = True
        down = [c for c in case.calls if c.get("phase") == "down"]
        ev.judged()
        if not down:
            ev.inconclusive(M("lc.no_call_while_down", ref=case.ref))
        ev.check(len(down) <= limit, rule="INSI-06", location=f"{case.ref}: insi.session",
                 message=M("lc.too_many_tries", ref=case.ref, calls=len(down), limit=limit))
        message = str((case.answer or {}).get("message") or "").strip()
        ev.check(bool(message), rule="INSI-06", location=f"{case.ref}: insi.answers",
                 message=M("lc.user_not_told", ref=case.ref, status=(case.answer or {}).get("status") or "-"))
        for o in case.observations:
            ev.check(not _ins(o) and (o.status or "").upper() not in ("RECUP", "QUAL"), rule="INSI-06", location=f"{case.ref}: {_where(o)}",
                     artefact=o.artefact, message=M("lc.invented", ref=case.ref, status=o.status or "-", count=len(o.ins)))
    if not judged:
        ev.inconclusive(M("lc.no_unavailable_case"))
