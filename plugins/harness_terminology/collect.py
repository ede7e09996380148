"""Collector: ask the terminology about every coded value the scenario's documents hold.

The coded values come from every plugin's extractor (``harness_coded_values``) applied to
what the scenario's earlier collect steps gathered. Each distinct question is asked once:
``ValueSet/$validate-code`` for (value set, system, code) when the context binds a value
set, ``CodeSystem/$lookup`` for (system, code). The answers, with their source (server and
version, or snapshot and hash), the cache's and the fallback's part, are recorded as one
artefact, ``terminology/answers``: the check judges them, and replay reads them back
without any network.

The questions of one scenario share a total deadline (``[terminology] deadline``, 120 s by
default): each exchange is bounded, but a server answering each just inside its timeout
would otherwise hold the run for questions × timeout. A question not yet asked when the
deadline passes is not asked: its answer says so (kind ``deadline``), and the check counts
it as unanswered (INCONCLUSIVE, never PASS). What is in flight ends at its own bound.
"""
from __future__ import annotations

import json

from harness import CollectContext, HarnessError, NotApplicable, catalogue, collector
from harness.terminology import TerminologyAuthError, ask_all

M = catalogue(__name__)

ANSWERS = "terminology/answers"
WORKERS = 8  # questions in flight at once against a remote server
DEADLINE = 120  # seconds for all the questions of one scenario


def questions_of(values) -> list[tuple[str, dict[str, str]]]:
    """Distinct questions, in first-seen order."""
    seen: dict[tuple, tuple[str, dict[str, str]]] = {}
    for v in values:
        key = v.validate_key()
        if key is not None and key not in seen:
            seen[key] = ("validate-code", {"value_set": key[1], "system": key[2], "code": key[3]})
        key = v.lookup_key()
        if key is not None and key not in seen:
            seen[key] = ("lookup", {"system": key[1], "code": key[2]})
    return list(seen.values())


@collector(produces=["terminology"])
def collect_answers(ctx: CollectContext) -> dict:
    if not ctx.inputs:
        raise NotApplicable(M("collect.nothing"))
    values = ctx.coded_values()
    questions = questions_of(values)
    setup = ctx.terminology()
    budget = float(ctx.target.section("terminology").get("deadline") or DEADLINE)
    try:
        answers = ask_all(setup, questions, budget=budget, late=M("collect.deadline", seconds=f"{budget:g}"), workers=WORKERS)
        description = setup.describe()
    except TerminologyAuthError as exc:
        raise HarnessError(M("collect.auth", reason=exc.detail)) from None
    record = {
        "as_of": setup.snapshot.as_of if setup.snapshot else None,
        "setup": description,
        "coded_values": len(values),
        "questions": len(questions),
        "answers": [a.to_dict() for a in answers],
    }
    data = json.dumps(record, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8")
    return {ANSWERS: ctx.record(data, media_type="application/json", label="terminology.answers")}
