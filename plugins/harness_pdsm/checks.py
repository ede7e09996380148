"""Checks of the PDSm plugin, from the recorded exchanges alone (replay re-derives them offline).

- ``pdsm.publish`` (ITI-65, PDSm flows 01/02): each bundle the software sent, read again from
  its recorded bytes: FHIR structure (fhir.resources), the rules of MHD's ProvideBundle and
  PDSm's profiles, the XDS metadata rules and the XDS↔CDA agreement through MHD's mapping
  (:mod:`harness_xds.mhd`: one comparison, not a second one), then the stand-in's answer.
- ``pdsm.consult`` (ITI-67/68, flows 05b-08): the software searched with the patient and the
  status, followed the pages, and read the current version of what it published; asked to
  consult while every search fails (503, FHIR: a transient error with an OperationOutcome), it
  says it could not search rather than showing an empty record (PDSM-CONS-06).
"""
from __future__ import annotations

from harness import CheckContext, Evaluation, Severity, Text, UnsafeInput, catalogue, check

M = catalogue(__name__)


def _session(ctx: CheckContext, ev: Evaluation) -> dict | None:
    if not ctx.has("pdsm.session"):
        ev.error(M("check.no_session"))
        return None
    return ctx.json("pdsm.session")


def _where(e: dict) -> str:
    return f"pdsm-request/{e['n']:03d} ({e['facts'].get('transaction') or '?'})"


def _of(session: dict, transaction: str) -> list[dict]:
    """The exchanges of ``transaction`` while the stand-in answered (not those of the failing consultation)."""
    return [e for e in session["exchanges"] if e["facts"].get("transaction") == transaction and e.get("phase", "answering") == "answering"]


@check(reads=["pdsm.session", "pdsm-request"])
def check_publish(ctx: CheckContext, ev: Evaluation) -> None:
    from harness_cda.document import read_cda
    from harness_xds import agreement, mhd, rules

    from .standin import fhir_problems, read_bundle

    session = _session(ctx, ev)
    if session is None:
        return
    provides = _of(session, "ITI-65")
    if not provides:
        ev.inconclusive(M("check.no_publication"))
        return
    for e in provides:
        name = f"pdsm-request/{e['n']:03d}"
        where = _where(e)
        sha = ctx.artefact(name).sha256 if ctx.has(name) else None
        if not e["complete"] or not ctx.has(name):
            ev.check(False, rule="PDSM-TX-01", location=where, message=M("check.not_read", status=e["http_status"]), artefact=sha)
            continue
        try:
            bundle = read_bundle(ctx.read(name), e["content_type"])
        except UnsafeInput as exc:
            ev.check(False, rule="FHIR-00", location=where, message=M("check.unreadable", reason=exc.detail), artefact=sha)
            continue
        except Exception as exc:  # noqa: BLE001 (XML that is no FHIR Bundle: fhir.resources' own error)
            ev.check(False, rule="FHIR-00", location=where, message=M("check.unreadable", reason=Text.same(type(exc).__name__)), artefact=sha)
            continue
        ev.judged()
        structure = fhir_problems(bundle)
        for path, text in structure:
            ev.add(rule="FHIR-01", severity=Severity.ERROR, location=f"{name} {path}", message=M("check.fhir", detail=Text.same(text)), artefact=sha)
        if structure:
            continue
        provided = mhd.read_provide(bundle)
        mapped = mhd.to_xds(provided)
        found = provided.problems + mapped.problems + rules.check_submission(mapped.submission, "xds", national=True)
        for p in found:
            ev.add(rule=p.rule, severity=p.severity, location=f"{name} {p.location}", message=p.message, artefact=sha)
        for de in mapped.submission.documents:
            data = mapped.documents.get(de.id)
            if data is None:
                continue
            try:
                doc = read_cda(data, f"{name} {de.location}")
            except UnsafeInput as exc:
                ev.check(False, rule="CDA-DOC-01", location=f"{name} {de.location}", message=M("check.not_cda", reason=exc.detail), artefact=sha)
                continue
            ev.judged()
            for p in agreement.disagreements(de, data, doc.root):
                ev.add(rule=p.rule, severity=p.severity, location=f"{name} {p.location}", message=p.message, artefact=sha)
        # the stand-in's answer: accepted, or each reason it gave
        ev.check(e["facts"].get("outcome") == "stored", rule="PDSM-TX-01", location=where,
                 message=M("check.refused", status=e["http_status"], codes=", ".join(sorted({i["code"] for i in e["facts"].get("issues", [])})) or "-"))
    ev.check(any(e["facts"].get("outcome") == "stored" and e["facts"].get("replaced") for e in provides), rule="PDSM-PUB-02",
             location=session["standin"], message=M("check.no_replacement"), severity=Severity.WARNING)


@check(reads=["pdsm.session"])
def check_consult(ctx: CheckContext, ev: Evaluation) -> None:
    session = _session(ctx, ev)
    if session is None:
        return
    searches = _of(session, "ITI-67")
    retrieves = _of(session, "ITI-68")
    if not searches and not retrieves:
        ev.inconclusive(M("check.no_consultation"))
        return
    ev.check(bool(searches), rule="PDSM-CONS-01", location=session["standin"], message=M("check.no_search"))
    for e in searches:  # MHD ITI-67 and PDSm: the patient and the status, always
        params = e["facts"].get("params", {})
        ev.check(e["http_status"] == 200, rule="PDSM-CONS-02", location=_where(e),
                 message=M("check.search_refused", status=e["http_status"], params=", ".join(sorted(params)) or "-"))
    # a search with more than a page: its next pages read (the stand-in's page size is a setting)
    paged = [e for e in searches if e["facts"].get("next")]
    for e in paged:
        wanted = e["facts"].get("page", 0) + 1
        ev.check(any(s["n"] > e["n"] and str(wanted) in s["facts"].get("params", {}).get("_page", []) for s in searches), rule="PDSM-CONS-05",
                 location=_where(e), message=M("check.next_page", total=e["facts"].get("total"), shown=e["facts"].get("shown")))
    published = {d for p in _of(session, "ITI-65") if p["facts"].get("outcome") == "stored" for d in p["facts"].get("stored", [])}
    ev.check(any(r["facts"].get("outcome") == "returned" and r["facts"].get("entry") in published for r in retrieves), rule="PDSM-CONS-03",
             location=session["standin"], message=M("check.no_retrieve"))
    failing = session.get("failing")
    if failing is not None:  # every search failed (503): the software says it could not search, not that the record is empty
        answer = failing.get("answer") or {}
        asked = [e for e in session["exchanges"] if e.get("phase") == "failing" and e["facts"].get("transaction") in ("ITI-67", "ITI-66")]
        ev.check(answer.get("state") != "done", rule="PDSM-CONS-06", location="pdsm-consult-failing",
                 message=M("check.error_as_empty", state=str(answer.get("state") or "-"), documents=str(answer.get("documents", "-")), asked=len(asked)))
    for r in retrieves:
        if r["facts"].get("outcome") == "returned":  # the current version, not one replaced since
            ev.check(r["facts"].get("status") == "current", rule="PDSM-CONS-04", location=_where(r),
                     message=M("check.superseded", document=r["facts"].get("document", "-")))
        else:
            ev.add(rule="PDSM-CONS-03", severity=Severity.WARNING, location=_where(r), message=M("check.retrieve_failed", status=r["http_status"]))
