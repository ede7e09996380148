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

from harness import CheckContext, Evaluation, Severity
from harness.terminology.model import question_key

from .collect import ANSWERS

VS_REQ = "SMT-VALUESET"
CODE_REQ = "SMT-CODE"
EXAMPLES = 3


def normalise_display(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.translate(str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'", "–": "-", "—": "-", "\u00a0": " ",
                                         "œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE"}))
    return re.sub(r"\s+", " ", text).strip().rstrip(".").strip().casefold()


def _where(v) -> str:
    return f"{v.artefact} {v.location}"


def _what(v, lang: str) -> str:
    label = v.context.get(lang) or v.context.get("fr") or ""
    return f"{label} " if label else ""


def _record(ctx: CheckContext):
    record = ctx.json(ANSWERS)
    answers = {question_key(a): a for a in record.get("answers", [])}
    values = [v for name in sorted(ctx.inputs) if name != ANSWERS for v in ctx.coded_values(name)]
    return answers, values


def _answer(answers: dict, key, ev: Evaluation):
    """The recorded answer to ``key``; a question the collector should have asked but
    did not record is an error of the record, not something to guess."""
    if key is None:
        return None
    found = answers.get(key)
    if found is None:
        ev.error(fr=f"réponse de terminologie absente de l'enregistrement pour {key}",
                 en=f"terminology answer missing from the record for {key}")
        raise _Incomplete
    return found


class _Incomplete(Exception):
    pass


def _conclude(ctx: CheckContext, ev: Evaluation, unanswered: dict, fallbacks: dict, requirement: str) -> None:
    for kind, count in sorted(fallbacks.items()):
        ev.add(rule="TERM-SRC-01", requirement=requirement, location=ANSWERS, severity=Severity.INFO, artefact=ctx.artefact(ANSWERS).sha256,
               fr=f"{count} réponse(s) données par l'instantané de repli, le serveur ayant échoué ({kind}) : ce verdict repose sur l'instantané",
               en=f"{count} answer(s) given by the fallback snapshot because the server failed ({kind}): this verdict relies on the snapshot")
    for kind, items in sorted(unanswered.items()):
        cause = items[0][1]
        examples = "; ".join(f"{v.code} ({v.system}) {v.artefact} {v.location}" for v, _ in items[:EXAMPLES])
        ev.inconclusive(fr=f"{len(items)} valeur(s) codée(s) sans réponse de terminologie ({kind}) : {cause['fr']} — ex. {examples}",
                        en=f"{len(items)} coded value(s) without a terminology answer ({kind}): {cause['en']} — e.g. {examples}")


def _cause(answer: dict | None) -> dict:
    return (answer or {}).get("error") or {"kind": "unanswered", "fr": "sans réponse", "en": "no answer"}


def check_value_sets(ctx: CheckContext, ev: Evaluation) -> None:
    """Each coded value bound to a value set is a member of it (TERM-VS-01, TERM-CODE-02)."""
    answers, values = _record(ctx)
    bound = [v for v in values if v.value_set is not None]
    if not bound:
        ev.inconclusive(fr="aucune valeur codée liée à un jeu de valeurs dans les documents",
                        en="no coded value bound to a value set in the documents")
        return
    unanswered: dict[str, list] = defaultdict(list)
    fallbacks: dict[str, int] = defaultdict(int)
    try:
        for v in bound:
            sha = ctx.artefact(v.artefact).sha256
            if not v.code or not v.system:
                if not v.null_flavor:
                    ev.check(False, rule="TERM-CODE-02", requirement=VS_REQ, location=_where(v), artefact=sha,
                             fr=f"{_what(v, 'fr')}sans @code ni @codeSystem utilisables alors que le jeu de valeurs {v.value_set.label} s'applique",
                             en=f"{_what(v, 'en')}has no usable @code/@codeSystem although value set {v.value_set.label} applies")
                continue
            va = _answer(answers, v.validate_key(), ev)
            if va.get("result") is None:
                unanswered[_cause(va)["kind"]].append((v, _cause(va)))
                continue
            if va.get("fallback"):
                fallbacks[va["fallback"]["kind"]] += 1
            hint = f" — {va['message']}" if va.get("message") else ""
            ev.check(va["result"], rule="TERM-VS-01", requirement=VS_REQ, location=_where(v), artefact=sha,
                     fr=f"{_what(v, 'fr')}{v.code} ({v.system}) n'appartient pas au jeu de valeurs {v.value_set.label}{hint}",
                     en=f"{_what(v, 'en')}{v.code} ({v.system}) is not in value set {v.value_set.label}{hint}")
    except _Incomplete:
        return
    _conclude(ctx, ev, unanswered, fallbacks, VS_REQ)


def check_codes(ctx: CheckContext, ev: Evaluation) -> None:
    """Each code exists in its code system (TERM-CODE-01), is not deprecated (TERM-DEP-01),
    and carries the code system's display (TERM-DISP-01, warning)."""
    answers, values = _record(ctx)
    coded = [v for v in values if v.code and v.system]
    if not coded:
        ev.inconclusive(fr="aucun code (avec son système) dans les documents", en="no code (with its system) in the documents")
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
                unanswered[_cause(la)["kind"]].append((v, _cause(la)))
                continue
            if used.get("fallback"):
                fallbacks[used["fallback"]["kind"]] += 1
            hint = f" — {used['message']}" if used.get("message") and not exists else ""
            if not ev.check(exists, rule="TERM-CODE-01", requirement=CODE_REQ, location=_where(v), artefact=sha,
                            fr=f"{_what(v, 'fr')}code {shown} inconnu de son système de codes{hint}",
                            en=f"{_what(v, 'en')}code {shown} unknown in its code system{hint}"):
                continue
            inactive = bool(used.get("inactive")) or bool((va or {}).get("inactive"))
            ev.check(not inactive, rule="TERM-DEP-01", requirement=CODE_REQ, location=_where(v), artefact=sha,
                     fr=f"{_what(v, 'fr')}code {shown} obsolète (désactivé ou fin de validité passée)",
                     en=f"{_what(v, 'en')}code {shown} is deprecated (inactive or past its end of validity)")
            expected = used.get("display") or (va or {}).get("display")
            if v.display and expected:
                ev.check(normalise_display(v.display) == normalise_display(expected), rule="TERM-DISP-01", requirement=CODE_REQ,
                         location=_where(v), artefact=sha, severity=Severity.WARNING,
                         fr=f"{_what(v, 'fr')}libellé « {v.display} » pour {shown}, la terminologie dit « {expected} »",
                         en=f"{_what(v, 'en')}display \"{v.display}\" for {shown}, the terminology says \"{expected}\"")
    except _Incomplete:
        return
    _conclude(ctx, ev, unanswered, fallbacks, CODE_REQ)
