"""Check: every coded value against the recorded terminology answers.

Pure function of the record: the coded values are extracted again from the recorded
documents (same extractors as live), and each is judged on the answers recorded in
``terminology/answers``. Rules:

* ``TERM-VS-01`` (error): the code is not in the value set its context requires;
* ``TERM-CODE-01`` (error): the code does not exist in its code system;
* ``TERM-CODE-02`` (error): a bound coded element carries no code or no code system;
* ``TERM-DEP-01`` (error): the code is deprecated (inactive, or its validity has ended);
* ``TERM-DISP-01`` (warning): the display name is not the code system's (ignoring case,
  accents, spacing and quote styles, which the ANS kit also ignores);
* ``TERM-SRC-01`` (info): answers given by the snapshot because the server failed.

A value no source could answer about makes the check INCONCLUSIVE (grouped by cause),
never PASS; an answer missing from the record is an ERROR of the record.
"""
from __future__ import annotations

import re
import unicodedata
from collections import defaultdict

from harness import ANY_INPUT, CheckContext, Evaluation, Localized, Severity, Text, UnsafeInput, catalogue, check
from harness.terminology import question_key

from .collect import ANSWERS

M = catalogue(__name__)

EXAMPLES = 3


def normalise_display(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.translate(str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'", "–": "-", "—": "-", "\u00a0": " ",
                                         "œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE"}))
    return re.sub(r"\s+", " ", text).strip().rstrip(".").strip().casefold()


def _where(v) -> str:
    return f"{v.artefact} {v.location}"


def _said(v, message: Localized, server_message: str | None = None) -> Localized:
    """``message`` about coded value ``v``: what the element is first, the server's own words last."""
    if server_message:
        message = M("with_server_message", message=message, server=server_message)
    return M("in_context", context=v.context, message=message) if v.context is not None else message


def _record(ctx: CheckContext, ev: Evaluation):
    """The recorded answers, and the coded values of every input; an input that cannot be
    read is a finding: its codes were not judged, so the check cannot pass."""
    record = ctx.json(ANSWERS)
    answers = {question_key(a): a for a in record.get("answers", [])}
    values = []
    for name in sorted(ctx.inputs):
        if name == ANSWERS:
            continue
        try:
            values += ctx.coded_values(name)
        except UnsafeInput as exc:
            ev.check(False, rule="TERM-DOC-01", location=name, artefact=ctx.artefact(name).sha256,
                     message=M("document.unreadable", reason=exc.detail))
    return answers, values


def _answer(answers: dict, key, ev: Evaluation):
    """The recorded answer to ``key``; a question the collector should have asked but
    did not record is an error of the record, not something to guess."""
    if key is None:
        return None
    found = answers.get(key)
    if found is None:
        ev.error(M("answer.missing", key=str(key)))
        raise _Incomplete
    return found


class _Incomplete(Exception):
    pass


def _conclude(ctx: CheckContext, ev: Evaluation, unanswered: dict, fallbacks: dict) -> None:
    for kind, count in sorted(fallbacks.items()):
        ev.add(rule="TERM-SRC-01", location=ANSWERS, severity=Severity.INFO, artefact=ctx.artefact(ANSWERS).sha256,
               message=M("fallback.used", count=count, kind=kind))
    for kind, items in sorted(unanswered.items()):
        cause = items[0][1]
        examples = "; ".join(f"{v.code} ({v.system}) {v.artefact} {v.location}" for v, _ in items[:EXAMPLES])
        ev.inconclusive(M("unanswered", count=len(items), kind=kind, cause=cause, examples=examples))


def _cause(answer: dict | None) -> tuple[str, Localized]:
    """Why no source answered, as the answer recorded it: (kind, message)."""
    error = (answer or {}).get("error")
    return (error["kind"], Text.of(error)) if error else ("unanswered", M("no_answer"))


@check(reads=[ANY_INPUT])
def check_value_sets(ctx: CheckContext, ev: Evaluation) -> None:
    """Each coded value bound to a value set is a member of it (TERM-VS-01, TERM-CODE-02)."""
    answers, values = _record(ctx, ev)
    bound = [v for v in values if v.value_set is not None]
    if not bound:
        ev.inconclusive(M("vs.nothing_bound"))
        return
    unanswered: dict[str, list] = defaultdict(list)
    fallbacks: dict[str, int] = defaultdict(int)
    try:
        for v in bound:
            sha = ctx.artefact(v.artefact).sha256
            if not v.code or not v.system:
                if not v.null_flavor:
                    ev.check(False, rule="TERM-CODE-02", location=_where(v), artefact=sha,
                             message=_said(v, M("code.missing", value_set=v.value_set.label)))
                continue
            va = _answer(answers, v.validate_key(), ev)
            if va.get("result") is None:
                kind, cause = _cause(va)
                unanswered[kind].append((v, cause))
                continue
            if va.get("fallback"):
                fallbacks[va["fallback"]["kind"]] += 1
            ev.check(va["result"], rule="TERM-VS-01", location=_where(v), artefact=sha,
                     message=_said(v, M("vs.not_member", code=v.code, system=v.system, value_set=v.value_set.label), va.get("message")))
    except _Incomplete:
        return
    _conclude(ctx, ev, unanswered, fallbacks)


@check(reads=[ANY_INPUT])
def check_codes(ctx: CheckContext, ev: Evaluation) -> None:
    """Each code exists in its code system (TERM-CODE-01), is not deprecated (TERM-DEP-01),
    and carries the code system's display (TERM-DISP-01, warning)."""
    answers, values = _record(ctx, ev)
    coded = [v for v in values if v.code and v.system]
    if not coded:
        ev.inconclusive(M("codes.nothing"))
        return
    unanswered: dict[str, list] = defaultdict(list)
    fallbacks: dict[str, int] = defaultdict(int)
    try:
        for v in coded:
            sha = ctx.artefact(v.artefact).sha256
            shown = f"{v.code} ({v.system})"
            la = _answer(answers, v.lookup_key(), ev)
            va = _answer(answers, v.validate_key(), ev) if v.value_set is not None else None
            if la.get("result") is not None:
                used = la
                exists = la["result"]
            elif va is not None and va.get("result") is True:
                used, exists = va, True  # a member of a value set exists in its code system
            else:
                kind, cause = _cause(la)
                unanswered[kind].append((v, cause))
                continue
            if used.get("fallback"):
                fallbacks[used["fallback"]["kind"]] += 1
            if not ev.check(exists, rule="TERM-CODE-01", location=_where(v), artefact=sha,
                            message=_said(v, M("code.unknown", code=shown), None if exists else used.get("message"))):
                continue
            inactive = bool(used.get("inactive")) or bool((va or {}).get("inactive"))
            ev.check(not inactive, rule="TERM-DEP-01", location=_where(v), artefact=sha,
                     message=_said(v, M("code.deprecated", code=shown)))
            expected = used.get("display") or (va or {}).get("display")
            if v.display and expected:
                ev.check(normalise_display(v.display) == normalise_display(expected), rule="TERM-DISP-01", location=_where(v), artefact=sha, severity=Severity.WARNING,
                         message=_said(v, M("code.display", display=v.display, code=shown, expected=expected)))
    except _Incomplete:
        return
    _conclude(ctx, ev, unanswered, fallbacks)
