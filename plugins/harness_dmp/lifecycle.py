"""What reached the DMP about the people the software registered through INSi (the INS plugin's
lifecycle: harness_ins.lifecycle): only a qualified identity's INS may be sent to the DMP.

Sources: the INS referential (ANS: the INS is used, and the DMP fed, only for a qualified
identity: retrieved from INSi and validated on a high-trust document) and the DMP's
integration guide for editors (CNAM, "DMP intégré aux LPS": the patient is identified by their
INS in ``XDSDocumentEntry.patientId`` and ``XDSSubmissionSet.patientId``). What was sent is read
from the requests the DMP simulator received while the software registered the people,
recorded by the INS plugin's collector (``insi-dmp``).
"""
from __future__ import annotations

from harness import CheckContext, Evaluation, Severity, UnsafeInput, catalogue, check
from harness_ins.lifecycle import registrations, sent_for
from harness_ins.checks import shown
from harness_xds import ebrim

from . import soap

M = catalogue(__name__)


def _patient_ids(ctx: CheckContext, name: str, content_type: str) -> tuple[str, list[str]]:
    """(the transaction's body element, every patientId of its submission) of a recorded request."""
    req = soap.parse(content_type, ctx.read(name))
    body = req.body
    if body is None:
        return "", []
    request = ebrim.find_request(body)
    if request is None:
        return ebrim.local(body), []
    sub = ebrim.read_submission(request)
    return ebrim.local(body), sorted({o.identifiers.get("patientId", "") for o in [*sub.submission_sets, *sub.documents]} - {""})


def _ins(cx: str) -> tuple[str, str]:
    """(matricule, OID) of a CX ``ID^^^&OID&ISO^NH``."""
    value, _, rest = cx.partition("^^^")
    authority = rest.split("^")[0].split("&")
    return value.strip().upper(), authority[1] if len(authority) > 1 else ""


@check(reads=("insi.cases", "insi.session", "insi-dmp"))
def check_insi_shared(ctx: CheckContext, ev: Evaluation) -> None:
    """DMP-INSI-01: every INS the software sent to the DMP while registering people through INSi
    is the active INS INSi returned for one of them, whose identity was validated on a
    high-trust document (qualified)."""
    session = ctx.json("insi.session")
    if not session.get("dmp"):
        ev.inconclusive(M("insi.no_dmp"))
        return
    people = registrations(ctx.json("insi.cases"), session)
    submitted = 0
    for request in session["dmp"]["requests"]:
        name = request["input"]
        try:
            kind, patients = _patient_ids(ctx, name, request.get("content_type") or "")
        except (soap.SoapError, UnsafeInput) as exc:
            ev.add(rule="DMP-INSI-01", severity=Severity.ERROR, location=name, artefact=ctx.artefact(name).sha256,
                   message=M("insi.unreadable", reason=str(exc)[:200]))
            continue
        if kind != "ProvideAndRegisterDocumentSetRequest":
            continue
        submitted += 1
        ev.judged()
        for cx in patients:
            value, _ = _ins(cx)
            who, brought = sent_for(people, value)
            where = f"{name} XDSSubmissionSet.patientId"
            if who is None:
                ev.add(rule="DMP-INSI-01", severity=Severity.ERROR, location=f"{brought.ref}: {where}" if brought else where,
                       artefact=ctx.artefact(name).sha256,
                       message=M("insi.not_from_insi", ins=shown(ctx, value), who=brought.ref if brought else "-"))
            elif not who.asked.get("document"):
                ev.add(rule="DMP-INSI-01", severity=Severity.ERROR, location=f"{who.ref}: {where}", artefact=ctx.artefact(name).sha256,
                       message=M("insi.not_qualified", ref=who.ref, ins=shown(ctx, value)))
    if not submitted:
        ev.inconclusive(M("insi.nothing_shared", people=len(people)))
