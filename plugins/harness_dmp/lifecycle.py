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

from harness import CheckContext, Evaluation, catalogue, check
from harness_ins.lifecycle import judge_shared
from harness_xds import ebrim

from . import soap

M = catalogue(__name__)
KEYS = {"none": "insi.no_dmp", "nothing": "insi.nothing_shared", "unreadable": "insi.unreadable", "not_from_insi": "insi.not_from_insi",
        "not_qualified": "insi.not_qualified"}


@check(reads=("insi.cases", "insi.session", "insi-dmp"))
def check_insi_shared(ctx: CheckContext, ev: Evaluation) -> None:
    """DMP-INSI-01: every INS the software sent to the DMP while registering people through INSi
    is the active INS INSi returned for one of them, whose identity was validated on a
    high-trust document (qualified)."""

    def patient_ids(name: str, record: dict) -> list[tuple[str, str]] | None:
        try:
            body = soap.parse(record.get("content_type") or "", ctx.read(name)).body
        except soap.SoapError as exc:
            raise ValueError(str(exc)) from None
        request = ebrim.find_request(body) if body is not None else None
        if body is None or ebrim.local(body) != "ProvideAndRegisterDocumentSetRequest" or request is None:
            return None  # a query, a retrieval: no document shared
        sub = ebrim.read_submission(request)
        return [(f"{name} XDSSubmissionSet.patientId", o.identifiers["patientId"]) for o in [*sub.submission_sets, *sub.documents]
                if o.identifiers.get("patientId")]

    judge_shared(ctx, ev, service="dmp", rule="DMP-INSI-01", patient_ids=patient_ids, said=M, keys=KEYS)
