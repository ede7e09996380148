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
while the stand-in is down. When the target's ``dmp`` is the DMP simulator of this run, the
request also names it (``"dmp": {"url", "credentials"}``), and its ``mssante`` the MSSanté
operator's simulator (``"mssante": {"host", "port", "tls", "certificate"}``): the professional
shares each new patient's note to the DMP and sends it to a colleague, which the software may
do for a qualified identity only; what each received meanwhile is recorded (``insi-dmp``,
``insi-mss``: read through the core, ``CollectContext.endpoint_received``, never by importing
their plugins) and judged by their plugins (DMP-INSI-01, MSS-INSI-01).
"""
from __future__ import annotations

import json

from harness import CheckContext, CollectContext, Evaluation, HarnessError, NotApplicable, Severity, UnsafeInput, catalogue, check, collector, parse_json

from . import insi
from .checks import ALL_CHANNELS, READERS, Observation, shown
from .collect import collect_cda, collect_fhir, collect_hl7v2
from .identity import parse_date

M = catalogue(__name__)
MAX_TRIES = 3  # calls to INSi for one registration while it is down (a setting: no public text fixes it)
MAX_ANSWER = 256 * 1024


# -- collecting ---------------------------------------------------------------------------------

# what the channel collectors produce, read again once the people are registered
CHANNEL_OUTPUTS = (*collect_hl7v2.produces, *collect_cda.produces, *collect_fhir.produces)


@collector(produces=["insi.cases", "insi.session", "insi.answers", "insi-register.exchange", "insi-request", "insi-response", "insi-dmp", "insi-mss",
                     *CHANNEL_OUTPUTS], once_per_run=True, alters=True)
def collect_register(ctx: CollectContext) -> dict:
    """The software registers the lifecycle's people through the INSi stand-in (asked through
    ``ins_register``), the stand-in up, then down for the last one; every INSi call recorded;
    then what it emits in each channel it has, read by the channel collectors. One step: under
    pytest-xdist the run collects it once, in one process, and every process judges that record
    (the software that registered the people is the one whose channels are read). It alters the
    software (seven more patients in its channels, notes in the DMP): it runs after every scenario
    that does not, whatever the order or the number of processes."""
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
    share = _shares(ctx)
    seen = {name: len(ctx.endpoint_received(name) or []) for name in share}
    first = len(standin.journal.exchanges)
    phases, answers = [], {}
    for phase, group in (("up", [c for c in cases if c.expected != "unavailable"]), ("down", [c for c in cases if c.expected == "unavailable"])):
        before = len(standin.journal.exchanges)
        standin.down = phase == "down"
        try:
            body = json.dumps({"url": standin.base_url, "credentials": str(standin.credentials), "patients": [c.asked() for c in group],
                               **share})
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
    received = {}
    for name, group in (("dmp", "insi-dmp"), ("mssante", "insi-mss")):  # what each received meanwhile, as received
        if name not in share:
            received[name] = None
            continue
        items = []
        for item in (ctx.endpoint_received(name) or [])[seen[name]:]:
            key = f"{item['n']:03d}"
            outputs[f"{group}/{key}"] = ctx.record(item["data"], media_type=(item.get("media_type") or "application/octet-stream").split(";")[0],
                                                   label=f"ins.{group}:{key}")
            items.append({"n": item["n"], "at": item["at"], "content_type": item.get("media_type"), **item.get("facts", {}),
                          "input": f"{group}/{key}"})
        received[name] = {"endpoint": ctx.endpoint(name), "requests": items}
    outputs["insi.session"] = ctx.record_json({"standin": standin.base_url, "phases": phases, "calls": calls, **received},
                                              label="ins.insi-session")
    for channel in (collect_hl7v2, collect_cda, collect_fhir):
        try:
            outputs.update(channel(ctx))
        except NotApplicable:
            pass  # a channel the software does not have: the others are judged
    return outputs


def _shares(ctx: CollectContext) -> dict:
    """Where the professional shares each new patient's document, by the endpoint's name: the
    DMP (``dmp``) and the MSSanté operator (``mssante``), each when the target's endpoint is a
    service of this run that says what it received (harness.running.context.Service); what the
    software is told of each."""
    from urllib.parse import urlsplit

    out = {}
    dmp = ctx.endpoint_service("dmp")
    if dmp and dmp.get("credentials") and not dmp.get("refuses_certificates") and ctx.endpoint_received("dmp") is not None:
        out["dmp"] = {"url": ctx.endpoint("dmp"), "credentials": str(dmp["credentials"])}
    mss = ctx.endpoint_service("mssante")
    if mss and ctx.endpoint_received("mssante") is not None:
        where = urlsplit(ctx.endpoint("mssante") or "")
        out["mssante"] = {"host": where.hostname or "127.0.0.1", "port": where.port, "tls": mss.get("tls"), "certificate": mss.get("certificate")}
    return out


# -- judging ------------------------------------------------------------------------------------

def _observations(ctx: CheckContext) -> list[Observation]:
    return [o for read in READERS.values() for o in read(ctx).observations]


class Registration:
    """One person registered: what was asked, INSi's answers to it (``found``: what INSi said of
    them in its last ``00``, else None; ``codes``: every report), what the software said of it
    and what it emits about them."""

    def __init__(self, asked: dict, calls: list[dict], answer: dict | None = None, observations: list[Observation] | None = None) -> None:
        self.asked, self.calls, self.answer, self.observations = asked, calls, answer, observations or []
        self.ref = asked["ref"]
        found = [c for c in calls if c.get("code") == insi.FOUND and c.get("answer")]
        self.found = found[-1]["answer"] if found else None
        self.codes = sorted({c["code"] for c in calls if c.get("code")})

    def born(self, birth_date: str | None, sex: str | None) -> bool:
        """Whether a person with this birth date and sex is this one (the cases' dates differ)."""
        return _same(self.asked, birth_date, sex)


def _same(asked: dict, birth_date: str | None, sex: str | None) -> bool:
    return parse_date(birth_date) == parse_date(asked["birth_date"]) and (sex or "").upper() == asked["sex"]


def _asked_for(asked: dict, call: dict) -> bool:
    """Whether an INSi call searched this person: the birth date, and the sex when the search
    carries one (a carte Vitale search does not)."""
    q = call.get("asked") or {}
    return parse_date(q.get("birth_date")) == parse_date(asked["birth_date"]) and (not q.get("sex") or q["sex"] == asked["sex"])


def registrations(cases: dict, session: dict) -> list[Registration]:
    """The registrations of a lifecycle record (``insi.cases``, ``insi.session``), each with its
    INSi calls: for another plugin judging what the software did next (the DMP's)."""
    return [Registration(asked, [c for c in session["calls"] if _asked_for(asked, c)]) for asked in cases["cases"]]


def sent_for(people: list[Registration], ins: str) -> tuple[Registration | None, Registration | None]:
    """Whose INS a software sent somewhere (a DMP, a message): (the person INSi returned it for
    as their active INS, or None; else the person it is otherwise linked to: the INS they
    brought, or one INSi gave as replaced)."""
    value = ins.strip().upper()
    active = next((p for p in people if p.found and p.found["active"]["ins"].upper() == value), None)
    linked = next((p for p in people if value in {(p.asked.get("ins") or "").upper(), *(h["ins"].upper() for h in (p.found or {}).get("history", []))}),
                  None)
    return active, linked


def shared_problem(people: list[Registration], ins: str) -> tuple[str, str, str] | None:
    """None when a software may have sent ``ins`` (to a DMP, in a message) about one of ``people``:
    INSi returned it as their active INS and their identity is qualified; else (the person's ref
    for the finding's location, or ""; the problem, ``"not_from_insi"`` or ``"not_qualified"``;
    the person concerned, or "-")."""
    who, linked = sent_for(people, ins)
    if who is None:
        return (linked.ref if linked else "", "not_from_insi", linked.ref if linked else "-")
    if not who.asked.get("document"):
        return (who.ref, "not_qualified", who.ref)
    return None


def judge_shared(ctx: CheckContext, ev: Evaluation, *, service: str, rule: str, patient_ids, said, keys: dict[str, str]) -> None:
    """Judge what reached ``service`` ("dmp", "mssante") while the people were registered, for the
    plugin that reads it: ``patient_ids(input name, record)`` gives each (location, patient CX)
    of one request, or None for a request that shares no document (an error it raises is an
    unreadable request, said); ``said`` the plugin's catalogue and ``keys`` its message keys:
    ``none`` (no such service in the run), ``nothing`` (``people``), ``unreadable``
    (``reason``), ``not_from_insi`` (``ins``, ``who``), ``not_qualified`` (``ref``, ``ins``)."""
    session = ctx.json("insi.session")
    if not session.get(service):
        ev.inconclusive(said(keys["none"]))
        return
    people = registrations(ctx.json("insi.cases"), session)
    shared = 0
    for record in session[service]["requests"]:
        name = record["input"]
        try:
            found = patient_ids(name, record)
        except (UnsafeInput, ValueError) as exc:
            ev.add(rule=rule, severity=Severity.ERROR, location=name, artefact=ctx.artefact(name).sha256,
                   message=said(keys["unreadable"], reason=getattr(exc, "detail", None) or str(exc)[:200]))
            continue
        if found is None:
            continue
        shared += 1
        ev.judged()
        for where, cx in sorted(set(found)):
            value = cx.partition("^^^")[0].strip().upper()
            problem = shared_problem(people, value)
            if problem is not None:
                ref, kind, who = problem
                ev.add(rule=rule, severity=Severity.ERROR, location=f"{ref}: {where}" if ref else where, artefact=ctx.artefact(name).sha256,
                       message=said(keys[kind], ins=shown(ctx, value), who=who, ref=who))
    if not shared:
        ev.inconclusive(said(keys["nothing"], people=len(people)))


def _cases(ctx: CheckContext) -> tuple[list[Registration], dict]:
    cases = ctx.json("insi.cases")
    answers = ctx.json("insi.answers") if ctx.has("insi.answers") else {}
    said = {str(r.get("ref")): r for phase in answers.values() if isinstance(phase, dict)
            for r in (phase.get("registered") or []) if isinstance(r, dict)}
    observations = _observations(ctx)
    out = registrations(cases, ctx.json("insi.session"))
    for case in out:
        case.answer = said.get(case.ref)
        case.observations = [o for o in observations if case.born(o.traits.birth_date, o.traits.sex)]
    return out, cases


def _where(o: Observation) -> str:
    return f"{o.source} {o.location}"


def _ins(o: Observation) -> list[tuple[str, str]]:
    from .identity import classify_system

    return [(i.value.strip().upper(), classify_system(i.system).oid) for i in o.ins]


@check(reads=("insi.cases", "insi.session", "insi.answers") + ALL_CHANNELS)
def check_qualification(ctx: CheckContext, ev: Evaluation) -> None:
    """INSI-01 … INSI-05: what the software emits about each person registered agrees with what
    INSi answered for them, and with whether an identity document was checked."""
    cases, _ = _cases(ctx)
    for case in cases:
        if case.asked["expected"] == "unavailable":
            continue  # judged by check_unavailable (its emissions too)
        _judge_case(ctx, ev, case)


def _judge_case(ctx: CheckContext, ev: Evaluation, case: Registration) -> None:
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
    out = [f"{name} {got or '-'} ≠ {want or '-'}" for name, got, want in pairs if insi.normalise(got or "") != insi.normalise(want or "")]
    if parse_date(t.birth_date) != parse_date(traits.get("birth_date")):
        out.append(f"birth_date {t.birth_date or '-'} ≠ {traits.get('birth_date') or '-'}")
    return out


@check(reads=("insi.cases", "insi.session", "insi.answers") + ALL_CHANNELS)
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
        if case.answer is None:  # its answer does not say what it showed its user: a person sees it
            ev.manual_pending(M("lc.user_message_unknown", ref=case.ref))
        else:
            message = str(case.answer.get("message") or "").strip()
            ev.check(bool(message), rule="INSI-06", location=f"{case.ref}: insi.answers",
                     message=M("lc.user_not_told", ref=case.ref, status=case.answer.get("status") or "-"))
        for o in case.observations:
            ev.check(not _ins(o) and (o.status or "").upper() not in ("RECUP", "QUAL"), rule="INSI-06", location=f"{case.ref}: {_where(o)}",
                     artefact=o.artefact, message=M("lc.invented", ref=case.ref, status=o.status or "-", count=len(o.ins)))
    if not judged:
        ev.inconclusive(M("lc.no_unavailable_case"))
