"""What reached the MSSanté operator about the people the software registered through INSi (the
INS plugin's lifecycle: harness_ins.lifecycle): a document sent through MSSanté names its patient
by their INS only when the identity is qualified.

Sources: the INS referential (ANS: the INS is used and shared only for a qualified identity);
the MSSanté integration guides (ANS, DST "Intégration MSSanté dans les logiciels": a document is
sent in an IHE XDM archive whose ``METADATA.XML`` names the patient in
``XDSSubmissionSet.patientId`` and ``XDSDocumentEntry.patientId``). What was sent is read from
the messages the mail simulator received while the software registered the people, recorded by
the INS plugin's collector (``insi-mss``), with the same safe readers as every message.
"""
from __future__ import annotations

from harness import CheckContext, Evaluation, SafeArchive, Severity, UnsafeInput, catalogue, check
from harness_ins.checks import shown
from harness_ins.lifecycle import registrations, sent_for
from harness_xds import xdm

from . import mail

M = catalogue(__name__)


def _patient_ids(raw: bytes, name: str) -> list[tuple[str, str]]:
    """(where, patientId) of every submission set and document entry in a message's XDM archives."""
    out = []
    for k, part in enumerate(mail.read(raw).xdm, 1):
        if part.payload is None:
            continue
        with SafeArchive(part.payload, name=f"{name}#{k}", limits=xdm.LIMITS) as archive:
            for subset in xdm.read(archive).subsets:
                if subset.submission is None:
                    continue
                for obj in [*subset.submission.submission_sets, *subset.submission.documents]:
                    if obj.identifiers.get("patientId"):
                        out.append((f"{name} {part.path} {subset.metadata_path}", obj.identifiers["patientId"]))
    return out


@check(reads=("insi.cases", "insi.session", "insi-mss"))
def check_insi_sent(ctx: CheckContext, ev: Evaluation) -> None:
    """MSS-INSI-01: every INS the software put in a message while registering people through INSi
    is the active INS INSi returned for one of them, whose identity is qualified (a high-trust
    identity document checked)."""
    session = ctx.json("insi.session")
    if not session.get("mssante"):
        ev.inconclusive(M("insi.no_mssante"))
        return
    people = registrations(ctx.json("insi.cases"), session)
    sent = 0
    for message in session["mssante"]["requests"]:
        name = message["input"]
        try:
            found = _patient_ids(ctx.read(name), name)
        except UnsafeInput as exc:
            ev.add(rule="MSS-INSI-01", severity=Severity.ERROR, location=name, artefact=ctx.artefact(name).sha256,
                   message=M("insi.unreadable", reason=exc.detail))
            continue
        sent += 1
        ev.judged()
        for where, cx in sorted(set(found)):
            value = cx.partition("^^^")[0]
            who, linked = sent_for(people, value)
            if who is None:
                ev.add(rule="MSS-INSI-01", severity=Severity.ERROR, location=f"{linked.ref}: {where}" if linked else where,
                       artefact=ctx.artefact(name).sha256, message=M("insi.not_from_insi", ins=shown(ctx, value), who=linked.ref if linked else "-"))
            elif not who.asked.get("document"):
                ev.add(rule="MSS-INSI-01", severity=Severity.ERROR, location=f"{who.ref}: {where}", artefact=ctx.artefact(name).sha256,
                       message=M("insi.not_qualified", ref=who.ref, ins=shown(ctx, value)))
    if not sent:
        ev.inconclusive(M("insi.nothing_sent", people=len(people)))
