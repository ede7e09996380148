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

from harness import CheckContext, Evaluation, SafeArchive, catalogue, check
from harness_ins.lifecycle import judge_shared
from harness_xds import xdm

from . import mail

M = catalogue(__name__)
KEYS = {"none": "insi.no_mssante", "nothing": "insi.nothing_sent", "unreadable": "insi.unreadable", "not_from_insi": "insi.not_from_insi",
        "not_qualified": "insi.not_qualified"}


@check(reads=("insi.cases", "insi.session", "insi-mss"))
def check_insi_sent(ctx: CheckContext, ev: Evaluation) -> None:
    """MSS-INSI-01: every INS the software put in a message while registering people through INSi
    is the active INS INSi returned for one of them, whose identity is qualified (a high-trust
    identity document checked)."""

    def patient_ids(name: str, record: dict) -> list[tuple[str, str]]:
        """Every submission set's and document entry's patientId in the message's XDM archives."""
        out = []
        for k, part in enumerate(mail.read(ctx.read(name)).xdm, 1):
            if part.payload is None:
                continue
            with SafeArchive(part.payload, name=f"{name}#{k}", limits=xdm.LIMITS) as archive:
                for subset in xdm.read(archive).subsets:
                    for obj in ([*subset.submission.submission_sets, *subset.submission.documents] if subset.submission else []):
                        if obj.identifiers.get("patientId"):
                            out.append((f"{name} {part.path} {subset.metadata_path}", obj.identifiers["patientId"]))
        return out

    judge_shared(ctx, ev, service="mssante", rule="MSS-INSI-01", patient_ids=patient_ids, said=M, keys=KEYS)
