"""The DRC/CISP-2 -> CIM-10 transcoding table the label convention asks for: collected, then judged.

**Collected** (``label.transcoding``): the vendor's file (``[transcoding] file``, or the
software's own download, ``[endpoints] label_table``), recorded as it is; then, for each
distinct code the table holds, what the run's terminology says (the national SMT, or the
offline snapshot; :mod:`harness.terminology`): ``CodeSystem/$lookup`` of every source code in
the source code system and of every target code in the CIM-10, ``ConceptMap/$translate`` of
every source code through the official concept map when the target names one, and
``ValueSet/$expand`` of the source code system (its implicit value set, ``<system>?fhir_vs``,
FHIR R4 §4.9.8, unless the target names another) for the coverage. Every answer is recorded
(``label.table.answers``): the checks read the file and the answers again, offline, in replay.

A code that does not have the shape of its code system is never asked: it is provably not one
of its codes. Shapes, from the classifications' own structure (none is assumed for another system, the DRC's):

- CISP-2 (ICPC-2, WONCA; NOS ``TRE_R313-CISP2``, ``urn:oid:2.16.840.1.113883.6.139``): a chapter
  letter (A B D F H K L N P R S T U W X Y Z) and a two-digit rubric, 01 to 99;
- CIM-10 (ICD-10, WHO and ATIH; NOS ``TRE_R310-CIM10``, ``urn:oid:2.16.840.1.113883.6.3``): a
  letter and two digits, then a dot and up to four characters for a
  subdivision (the ATIH's extensions, ``R47.02``, ``C16.9+0``, ``O04.-0``, are in the ANS kit's value
  sets: its 827 CIM-10 codes all have this shape, tested).
  Written without its dot (``E119``: the ATIH's PMSI files write it so) it is read as
  ``E11.9``, and said.

At most :data:`MAX_CODES` distinct codes a side are asked (a hostile table of a million
distinct codes): the others are counted, and the checks cannot conclude on them.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from harness import CheckContext, CollectContext, Evaluation, HarnessError, Severity, Text, catalogue, check, collector
from harness.terminology import TerminologyAuthError, ask_all, system_oid

from .files import file_name, vendor_file
from .said import Said
from .table import MAX_TABLE_BYTES, Layout, Problem, Row, read_table

M = catalogue(__name__)

SECTION = "transcoding"
TABLE = "label.table"
ANSWERS = "label.table.answers"
ENDPOINT = "label_table"

CISP2 = "2.16.840.1.113883.6.139"
CIM10 = "2.16.840.1.113883.6.3"
# their canonical URLs in the national terminology (NOS TRE_R313-CISP2 and TRE_R310-CIM10, as the
# ANS publishes them: ansforge/IG-fhir-mesures-de-sante, input/fsh/CodeSystems)
CISP2_URL = "https://mos.esante.gouv.fr/NOS/TRE_R313-CISP2/FHIR/TRE-R313-CISP2"
CIM10_URL = "https://mos.esante.gouv.fr/NOS/TRE_R310-CIM10/FHIR/TRE-R310-CIM10"
SHAPES = {
    CISP2: re.compile(r"^[ABDFHKLNPRSTUWXYZ](0[1-9]|[1-9][0-9])$"),
    CIM10: re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Za-z+\-]{1,4})?$"),
}
UNDOTTED = re.compile(r"^([A-Z][0-9]{2})([0-9A-Za-z+\-]{1,4})$")
MAX_CODES = 50_000  # distinct codes asked per side
WORKERS = 8  # questions in flight against a remote server
DEADLINE = 300  # seconds for all the questions of the table


@dataclass(frozen=True)
class Settings:
    layout: Layout
    source_system: str
    target_system: str
    concept_map: str | None
    source_value_set: str
    min_coverage: int
    name: str  # the table's file name, as findings locate it


def settings(target) -> Settings:
    conf = target.section(SECTION)
    name = str(conf.get("file") or "")
    fmt = str(conf.get("format") or ("xlsx" if name.lower().endswith((".xlsx", ".xlsm")) else "csv")).lower()
    if fmt not in ("csv", "xlsx"):
        raise HarnessError(M("settings.format", format=fmt))
    source_system = str(conf.get("source_system") or CISP2_URL)
    layout = Layout(fmt, str(conf.get("source_column") or "code_source"), str(conf.get("target_column") or "code_cim10"),
                    encoding=str(conf.get("encoding") or "utf-8"), delimiter=conf.get("delimiter") or None, sheet=conf.get("sheet") or None,
                    header_row=int(conf.get("header_row") or 1))
    if layout.delimiter is not None and len(layout.delimiter) != 1:
        raise HarnessError(M("settings.delimiter", delimiter=layout.delimiter))
    min_coverage = int(conf.get("min_coverage", 100))
    if not 0 <= min_coverage <= 100:
        raise HarnessError(M("settings.coverage", value=min_coverage))
    return Settings(layout, source_system, str(conf.get("target_system") or CIM10_URL), conf.get("concept_map") or None,
                    str(conf.get("source_value_set") or f"{source_system}?fhir_vs"), min_coverage,
                    file_name(conf, target.section("endpoints"), ENDPOINT, "table"))


def normalised(code: str, system: str) -> tuple[str, str | None]:
    """(the code to ask about, why it was rewritten or None): a CIM-10 code without its dot is
    read with it."""
    if system_oid(system) == CIM10 and not SHAPES[CIM10].match(code):
        m = UNDOTTED.match(code)
        if m:
            return f"{m.group(1)}.{m.group(2)}", "undotted"
    return code, None


def shaped(code: str, system: str) -> bool:
    shape = SHAPES.get(system_oid(system))
    return shape is None or bool(shape.match(code))


# -- collecting ---------------------------------------------------------------------------------


@collector(produces=[TABLE, f"{TABLE}.exchange", ANSWERS])
def collect_transcoding(ctx: CollectContext) -> dict:
    s = settings(ctx.target)
    media = "text/csv" if s.layout.format == "csv" else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    outputs, data = vendor_file(ctx, section=SECTION, endpoint=ENDPOINT, none=M("collect.no_table", endpoint=ENDPOINT, section=SECTION),
                                name=TABLE, limit=MAX_TABLE_BYTES, media_type=media)
    if data is None:
        return outputs
    summary = summarize(read_table(data, s.layout, s.name), s)
    asked: dict[str, list[str]] = {}
    skipped = {}
    for side, written, system in (("source", summary.sources, s.source_system), ("target", summary.targets, s.target_system)):
        codes = list(dict.fromkeys(c for c in (normalised(w, system)[0] for w in written) if shaped(c, system)))
        asked[side] = codes[:MAX_CODES]
        skipped[side] = len(codes) - len(asked[side]) + summary.beyond[side]
    setup = ctx.terminology()
    budget = float(ctx.target.section("terminology").get("deadline") or DEADLINE)
    questions: list[tuple[str, dict[str, str]]] = [("lookup", {"system": s.source_system, "code": c}) for c in asked["source"]]
    questions += [("lookup", {"system": s.target_system, "code": c}) for c in asked["target"]]
    if s.concept_map:
        questions += [("translate", {"concept_map": s.concept_map, "system": s.source_system, "code": c}) for c in asked["source"]]
    try:
        answers = ask_all(setup, questions, budget=budget, late=M("collect.deadline", seconds=f"{budget:g}"), workers=WORKERS)
        expansion = _expansion(setup.service, s.source_value_set)
        description = setup.describe()
    except TerminologyAuthError as exc:
        raise HarnessError(M("collect.auth", reason=exc.detail)) from None
    record = {"setup": description, "as_of": setup.snapshot.as_of if setup.snapshot else None,
              "source_system": s.source_system, "target_system": s.target_system, "concept_map": s.concept_map,
              "source_value_set": s.source_value_set, "skipped": skipped, "expansion": expansion,
              "answers": [a.to_dict() for a in answers]}
    data = json.dumps(record, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8")
    outputs[ANSWERS] = ctx.record(data, media_type="application/json", label=ANSWERS)
    return outputs


def _expansion(service, value_set: str) -> dict[str, Any]:
    """The codes of the source code system, as the terminology expands them (for the coverage)."""
    try:
        exp = service.expand(value_set)
    except HarnessError as exc:
        return {"value_set": value_set, "error": exc.messages}
    return {"value_set": value_set, "complete": bool(exp.complete), "total": exp.total, "source": exp.source,
            "codes": sorted({c["code"] for c in exp.concepts if c.get("code")})}


# -- judging ------------------------------------------------------------------------------------


def _rows(ctx: CheckContext, s: Settings):
    """The recorded table's rows, read from the evidence a piece at a time."""
    with ctx.open(TABLE) as fh:
        yield from read_table(fh, s.layout, s.name)


@dataclass
class Summary:
    """What the code checks need of the table, in one pass over it: bounded by the distinct
    codes (at most :data:`MAX_KEPT` a side), not by the rows."""

    sources: dict[str, str]  # source code as written -> where it is first
    targets: dict[str, str]  # target code as written -> where it is first
    mapping: dict[str, tuple[str, set[str]]]  # source code (normalised) -> (first row, its targets, normalised)
    beyond: dict[str, int]  # side -> rows whose code came after MAX_KEPT distinct ones


MAX_KEPT = 2 * MAX_CODES
MAX_TARGETS = 64  # distinct targets kept for one source code
_SUMMARIES: dict[tuple, Summary] = {}


def summarize(items, s: Settings) -> Summary:
    """The :class:`Summary` of a table's rows (``read_table``'s items): what the collector asks
    about and what the checks judge, derived alike."""
    summary = Summary({}, {}, {}, {"source": 0, "target": 0})
    for item in items:
        if not isinstance(item, Row):
            continue
        for written, kept, side in ((item.source, summary.sources, "source"), (item.target, summary.targets, "target")):
            if written and written not in kept:
                if len(kept) < MAX_KEPT:
                    kept[written] = item.where
                else:
                    summary.beyond[side] += 1
        if item.source:
            code = normalised(item.source, s.source_system)[0]
            if shaped(code, s.source_system) and (code in summary.mapping or len(summary.mapping) < MAX_KEPT):
                where, targets = summary.mapping.setdefault(code, (item.where, set()))
                if item.target and len(targets) < MAX_TARGETS:
                    targets.add(normalised(item.target, s.target_system)[0])
    return summary


def _summary(ctx: CheckContext, s: Settings) -> Summary:
    """The recorded table's :class:`Summary`, read once per process for the checks of one table."""
    key = (ctx.artefact(TABLE).sha256, s)
    if key not in _SUMMARIES:
        _SUMMARIES.clear()  # one table at a time
        _SUMMARIES[key] = summarize(_rows(ctx, s), s)
    return _SUMMARIES[key]


def _answers(ctx: CheckContext) -> tuple[dict, dict]:
    record = ctx.json(ANSWERS)
    index: dict[tuple, dict] = {}
    for a in record.get("answers", []):
        q = a.get("question", {})
        if a.get("op") == "translate":
            index[("translate", q.get("code"))] = a
        else:
            index[("lookup", system_oid(q.get("system", "")), q.get("code"))] = a
    return record, index


@check(reads=[TABLE])
def check_file(ctx: CheckContext, ev: Evaluation) -> None:
    """LES-TRANS-FILE: the table reads as declared (encoding, columns, one value per cell, no
    formula, no merged cell, no error value), and each row names a source code."""
    s = settings(ctx.target)
    artefact = ctx.artefact(TABLE).sha256
    said = Said(ev, s.name, artefact)
    rows = 0
    rules = {"encoding": "LABEL-TABLE-02", "nul": "LABEL-TABLE-01", "field-too-large": "LABEL-TABLE-01", "malformed": "LABEL-TABLE-01",
             "archive": "LABEL-TABLE-01", "sheet": "LABEL-TABLE-01", "header": "LABEL-TABLE-03", "columns": "LABEL-TABLE-03",
             "formula": "LABEL-TABLE-04", "cell-error": "LABEL-TABLE-05", "merged": "LABEL-TABLE-06"}
    for item in _rows(ctx, s):
        if isinstance(item, Problem):
            ev.assertions += 1
            said.fail(rules.get(item.kind, "LABEL-TABLE-01"), item.where, item.detail)
            continue
        rows += 1
        ev.assertions += 1
        if not item.source:
            said.fail("LABEL-TABLE-07", item.where, M("check.no_source", column=s.layout.source_column))
    said.close()
    ev.check(rows > 0, rule="LABEL-TABLE-08", location=s.name, artefact=artefact, message=M("check.no_rows"))
    ev.add(rule="LABEL-TABLE-00", location=s.name, message=M("check.rows", rows=rows), artefact=artefact)


# each side's messages (written out whole: the catalogue test finds the keys used)
KEYS = {"source": {"shape": "check.source_shape", "unknown": "check.source_unknown", "inactive": "check.source_inactive", "count": "check.source_count"},
        "target": {"shape": "check.target_shape", "unknown": "check.target_unknown", "inactive": "check.target_inactive", "count": "check.target_count"}}


def _judge_codes(ctx: CheckContext, ev: Evaluation, side: str) -> None:
    s = settings(ctx.target)
    record, index = _answers(ctx)
    system = s.source_system if side == "source" else s.target_system
    prefix = "LABEL-SRC" if side == "source" else "LABEL-TGT"
    artefact = ctx.artefact(TABLE).sha256
    said = Said(ev, s.name, artefact)
    summary = _summary(ctx, s)
    seen = summary.sources if side == "source" else summary.targets
    unanswered: dict[str, int] = {}
    over = summary.beyond[side]
    for written, where in seen.items():
        code, why = normalised(written, system)
        if why == "undotted":
            said.fail(f"{prefix}-04", where, M("check.undotted", code=written, dotted=code), Severity.WARNING)
        if not shaped(code, system):
            ev.assertions += 1
            said.fail(f"{prefix}-02", where, M(KEYS[side]["shape"], code=written, system=system))
            continue
        answer = index.get(("lookup", system_oid(system), code))
        if answer is None:
            over += 1
            continue
        if answer.get("result") is None:
            kind = (answer.get("error") or {}).get("kind", "unknown")
            unanswered[kind] = unanswered.get(kind, 0) + 1
            continue
        ev.assertions += 1
        if answer["result"] is False:
            said.fail(f"{prefix}-01", where, M(KEYS[side]["unknown"], code=code, system=system, server=answer.get("message") or "-"))
        elif answer.get("inactive"):
            severity = Severity.ERROR if side == "target" else Severity.WARNING
            said.fail(f"{prefix}-03", where, M(KEYS[side]["inactive"], code=code, system=system), severity)
    said.close()
    skipped = (record.get("skipped") or {}).get(side, 0)
    if over or skipped:
        ev.inconclusive(M("check.not_asked", count=over, limit=MAX_CODES))
    for kind, n in sorted(unanswered.items()):
        first = next((a for a in index.values() if a.get("result") is None and (a.get("error") or {}).get("kind") == kind
                      and a.get("op") == "lookup" and system_oid(a["question"].get("system", "")) == system_oid(system)), None)
        reason = (first or {}).get("error") or {}
        ev.inconclusive(M("check.unanswered", count=n, kind=kind, reason=Text.of({"fr": reason.get("fr", "-"), "en": reason.get("en", "-")})))
    ev.add(rule=f"{prefix}-00", location=s.name, message=M(KEYS[side]["count"], count=len(seen)), artefact=artefact)


@check(reads=[TABLE, ANSWERS])
def check_source_codes(ctx: CheckContext, ev: Evaluation) -> None:
    """LES-TRANS-SOURCE: every source code is a code of the source code system (CISP-2 or DRC)."""
    _judge_codes(ctx, ev, "source")


@check(reads=[TABLE, ANSWERS])
def check_target_codes(ctx: CheckContext, ev: Evaluation) -> None:
    """LES-TRANS-TARGET: every target code is a CIM-10 code, and not retired."""
    _judge_codes(ctx, ev, "target")


@check(reads=[TABLE, ANSWERS])
def check_coverage(ctx: CheckContext, ev: Evaluation) -> None:
    """LES-TRANS-COVERAGE: the share of the source code system's codes the table transcodes
    (a row with an empty target is a code the vendor decided has no CIM-10 counterpart: it is
    covered), at least ``min_coverage`` per cent."""
    s = settings(ctx.target)
    record, _ = _answers(ctx)
    expansion = record.get("expansion") or {}
    artefact = ctx.artefact(TABLE).sha256
    if expansion.get("error") or not expansion.get("codes"):
        error = expansion.get("error") or {}
        ev.inconclusive(M("check.no_expansion", value_set=expansion.get("value_set", s.source_value_set),
                          reason=Text.of({"fr": error.get("fr", "-"), "en": error.get("en", "-")})))
        return
    if not expansion.get("complete"):
        ev.inconclusive(M("check.partial_expansion", value_set=expansion["value_set"], count=len(expansion["codes"]), total=expansion.get("total")))
        return
    system_codes = set(expansion["codes"])
    covered = set(_summary(ctx, s).mapping) & system_codes
    share = 100.0 * len(covered) / len(system_codes)
    missing = sorted(system_codes - covered)
    ev.add(rule="LABEL-COV-00", location=s.name, artefact=artefact,
           message=M("check.coverage", covered=len(covered), total=len(system_codes), share=f"{share:.1f}", value_set=expansion["value_set"]))
    said = Said(ev, s.name, artefact)
    for code in missing:
        said.fail("LABEL-COV-02", f"{expansion['value_set']}#{code}", M("check.uncovered", code=code), Severity.WARNING)
    said.close()
    ev.check(share + 1e-9 >= s.min_coverage, rule="LABEL-COV-01", location=s.name, artefact=artefact,
             message=M("check.coverage_low", share=f"{share:.1f}", minimum=s.min_coverage, missing=len(missing)))


@check(reads=[TABLE, ANSWERS])
def check_official_map(ctx: CheckContext, ev: Evaluation) -> None:
    """LES-TRANS-MAP: each mapping against the official concept map the target names, when the
    terminology holds it: agreements, disagreements (an error each) and codes the official map
    does not transcode, counted."""
    s = settings(ctx.target)
    record, index = _answers(ctx)
    artefact = ctx.artefact(TABLE).sha256
    if not s.concept_map:
        ev.inconclusive(M("check.no_concept_map", section=SECTION))
        return
    vendor = _summary(ctx, s).mapping
    said = Said(ev, s.name, artefact)
    agree = disagree = unmapped = 0
    unanswered: dict[str, int] = {}
    for code, (where, targets) in vendor.items():
        answer = index.get(("translate", code))
        if answer is None:
            unanswered["not-asked"] = unanswered.get("not-asked", 0) + 1
            continue
        if answer.get("result") is None and not answer.get("matches"):
            kind = (answer.get("error") or {}).get("kind", "unknown")
            unanswered[kind] = unanswered.get(kind, 0) + 1
            continue
        official = {m["code"] for m in answer.get("matches") or [] if m.get("code") and m.get("relationship") not in ("not-related-to", "unmatched", "disjoint")}
        if not official and answer.get("message") and "|" in str(answer.get("message")) and answer.get("result"):
            official = {str(answer["message"]).rsplit("|", 1)[1]}  # an answer recorded before the matches were
        ev.assertions += 1
        if not official:
            unmapped += 1
            continue
        if targets & official:
            agree += 1
            continue
        disagree += 1
        said.fail("LABEL-MAP-01", where, M("check.disagrees", code=code, vendor=", ".join(sorted(targets)) or "-", official=", ".join(sorted(official)),
                                           concept_map=s.concept_map))
    said.close()
    ev.add(rule="LABEL-MAP-00", location=s.name, artefact=artefact,
           message=M("check.map_counts", agree=agree, disagree=disagree, unmapped=unmapped, concept_map=s.concept_map))
    for kind, n in sorted(unanswered.items()):
        ev.inconclusive(M("check.map_unanswered", count=n, kind=kind))
