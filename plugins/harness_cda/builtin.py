"""The built-in CDA rules (:mod:`.rules`: the CI-SIS header, the body, every INS) as checks
any service plugin makes for the documents it records: ``document_check(rules, groups)``
judges every document of the input groups, from the recorded bytes alone, so that
replay re-derives it offline. Matricules are masked in the messages as the INS plugin shows
them; a production identity marks the evaluation sensitive."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from harness import CheckContext, Evaluation, Localized, Message, Problem, UnsafeInput, catalogue, check

from . import rules
from .document import CdaDocument, read_cda

M = catalogue(__name__)

SENSITIVE = "production-identity"


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
    return rules.check_header(doc.root, base)


def _body(ctx: CheckContext, ev: Evaluation, doc: CdaDocument, base: str) -> list[Problem]:
    return rules.check_body(doc.root, base)


def _ins(ctx: CheckContext, ev: Evaluation, doc: CdaDocument, base: str) -> list[Problem]:
    reading = rules.check_ins(doc.tree, doc.root)
    if reading.production:
        ev.holds_sensitive(SENSITIVE)
    return [replace(p, message=_masked(ctx, p.message, reading.matricules)) for p in reading.problems]


# the requirements they prove are written in scenarios/cda-builtin.toml (CISIS-BUILTIN-HEADER,
# -BODY, -INS); a check's findings cite the requirement of the scenario it runs for
RULES: dict[str, Callable[..., list[Problem]]] = {"cda_header": _header, "cda_body": _body, "cda_ins": _ins}


def document_check(rules: Callable[..., list[Problem]], groups: tuple[str, ...]):
    """A check running ``rules`` (one of :data:`RULES`) on every document of the input
    ``groups``: each service plugin judges the documents it records with it (the DMP plugin,
    those the software submits; the MSSanté plugin, those of XDM archives)."""
    @check(reads=list(groups))
    def check_documents(ctx: CheckContext, ev: Evaluation) -> None:
        names = [f"{g}/{item}" for g in groups for item in ctx.items(g)]
        if not names:
            ev.inconclusive(M("builtin.no_document"))
            return
        for name in names:
            art = ctx.artefact(name).sha256
            try:
                doc = read_cda(ctx.read(name), name)
            except UnsafeInput as exc:
                ev.check(False, rule="CDA-DOC-01", location=name, artefact=art, message=M("builtin.unreadable", reason=exc.detail))
                continue
            base = doc.tree.getpath(doc.root) if doc.embedded else "/ClinicalDocument"
            ev.judged()
            for p in rules(ctx, ev, doc, base):
                ev.add(rule=p.rule, severity=p.severity, location=f"{name} {p.location}", artefact=art, message=p.message)

    return check_documents
