"""Checks of the DMP plugin: built-in CDA rules (no kit) on every document judged, from the
recorded bytes alone, so that replay re-derives them offline."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from harness import CheckContext, Evaluation, Localized, Message, UnsafeInput, catalogue, check
from harness_cda.document import CdaDocument, read_cda
from harness_cda.document import Problem

from . import cda_rules

M = catalogue(__name__)

REQ_HEADER = "CISIS-BUILTIN-HEADER"
REQ_BODY = "CISIS-BUILTIN-BODY"
REQ_INS = "CISIS-BUILTIN-INS"
SENSITIVE = "production-identity"
# Where documents come from: files and the software's index ([cda] documents, cda_index,
# collected by the kit plugin's ``cda.files``), or what the software submitted to the DMP
# simulator.
FILES = ("doc", "doc-live")
SUBMITTED = ("dmp-doc",)


def _masked(ctx: CheckContext, message: Localized, matricules: set[str]) -> Localized:
    """``message`` with every matricule of the document replaced, in its parameters, by
    its stand-in under the run's salt (as the INS plugin shows them)."""
    ordered = sorted(matricules, key=len, reverse=True)

    def mask(param):
        if isinstance(param, Message):
            return param.replace(**{k: mask(v) for k, v in param.params})
        if isinstance(param, str):
            for v in ordered:
                param = param.replace(v, f"NIR#{ctx.mask(v.upper())}")
        return param

    return mask(message)


def _header(ctx: CheckContext, ev: Evaluation, doc: CdaDocument, base: str) -> list[Problem]:
    return cda_rules.check_header(doc.root, base)


def _body(ctx: CheckContext, ev: Evaluation, doc: CdaDocument, base: str) -> list[Problem]:
    return cda_rules.check_body(doc.root, base)


def _ins(ctx: CheckContext, ev: Evaluation, doc: CdaDocument, base: str) -> list[Problem]:
    reading = cda_rules.check_ins(doc.tree, doc.root)
    if reading.production:
        ev.holds_sensitive(SENSITIVE)
    return [replace(p, message=_masked(ctx, p.message, reading.matricules)) for p in reading.problems]


RULES: dict[str, tuple[str, Callable[..., list[Problem]]]] = {
    "cda_header": (REQ_HEADER, _header),
    "cda_body": (REQ_BODY, _body),
    "cda_ins": (REQ_INS, _ins),
}


def _document_check(requirement: str, rules: Callable[..., list[Problem]], groups: tuple[str, ...]):
    @check(reads=list(groups))
    def check_documents(ctx: CheckContext, ev: Evaluation) -> None:
        names = [f"{g}/{item}" for g in groups for item in ctx.items(g)]
        if not names:
            ev.inconclusive(M("check.no_document"))
            return
        for name in names:
            art = ctx.artefact(name).sha256
            try:
                doc = read_cda(ctx.read(name), name)
            except UnsafeInput as exc:
                ev.check(False, rule="CDA-DOC-01", requirement=requirement, location=name, artefact=art, message=M("check.unreadable", reason=exc.detail))
                continue
            base = doc.tree.getpath(doc.root) if doc.embedded else "/ClinicalDocument"
            ev.judged()
            for p in rules(ctx, ev, doc, base):
                ev.add(rule=p.rule, requirement=requirement, severity=p.severity, location=f"{name} {p.location}", artefact=art, message=p.message)

    return check_documents


def document_checks() -> dict:
    """``dmp.cda_header`` and the like on files and index documents; ``dmp.submitted_header``
    and the like on what the software submitted to the simulator."""
    out = {}
    for key, (requirement, rules) in RULES.items():
        out[f"dmp.{key}"] = _document_check(requirement, rules, FILES)
        out[f"dmp.submitted_{key.removeprefix('cda_')}"] = _document_check(requirement, rules, SUBMITTED)
    return out
