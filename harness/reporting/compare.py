"""Comparing what two bundles concluded: requirement verdicts, check steps and findings.

Two runs of the same scenarios on the same product (two releases of the harness, or of the
product) differ in what no verdict depends on: run ids, times, the masking salt (so masked
values), loopback ports, the folders the runs read from. Those are set aside; every other
difference is listed. ``harness compare A B`` takes two bundles, or two folders holding
one sub-folder per run (``bench/fidelity.py`` writes them), matched by name.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..evidence.bundle import Bundle
from ..messages import Message, catalogue

M = catalogue(__name__)

_MASKED = re.compile(r"NIR#[0-9a-f]{12}")
_LOOPBACK = re.compile(r"(127\.0\.0\.1|localhost|\[::1\]):\d+")


@dataclass
class Comparison:
    name: str
    differences: list[Message] = field(default_factory=list)
    findings_compared: int = 0
    scenarios_compared: int = 0

    @property
    def identical(self) -> bool:
        return not self.differences


def _normalise(text: str, equate: list[tuple[str, str]]) -> str:
    for old, new in equate:
        text = text.replace(old, new)
    return _LOOPBACK.sub(r"\1:PORT", _MASKED.sub("NIR#MASKED", text))


def finding_key(f: dict, equate: list[tuple[str, str]]) -> tuple:
    return (f.get("check"), f["rule"], f["requirement"], f["severity"], _normalise(f["location"], equate),
            _normalise(f["message"]["fr"], equate), _normalise(f["message"]["en"], equate))


def step_keys(result, equate: list[tuple[str, str]]) -> list[tuple]:
    checks = [(c.name, c.verdict.value, c.assertions, tuple(_normalise(r.render("fr"), equate) for r in c.reasons),
               tuple(_normalise(r.render("en"), equate) for r in c.reasons)) for c in result.checks]
    collect = [(c.name, c.status.value, _normalise(c.message.render("en"), equate) if c.message else "") for c in result.collect]
    return checks + collect


def compare_bundles(a: Path, b: Path, equate: list[tuple[str, str]] = (), name: str = "") -> Comparison:
    out = Comparison(name or f"{a.name} / {b.name}")
    with Bundle(a) as first, Bundle(b) as second:
        ra, rb = first.record, second.record
        va = {k: v["verdict"] for k, v in ra.requirements.items()}
        vb = {k: v["verdict"] for k, v in rb.requirements.items()}
        for req in sorted(set(va) | set(vb)):
            if va.get(req) != vb.get(req):
                out.differences.append(M("compare.requirement", requirement=req, a=va.get(req, "-"), b=vb.get(req, "-")))
        results_b = {r.scenario: r for r in rb.results}
        for result in ra.results:
            other = results_b.get(result.scenario)
            if other is None:
                out.differences.append(M("compare.scenario_missing", scenario=result.scenario))
                continue
            out.scenarios_compared += 1
            if result.verdict is not other.verdict:
                out.differences.append(M("compare.verdict", scenario=result.scenario, a=result.verdict.value, b=other.verdict.value))
            if step_keys(result, list(equate)) != step_keys(other, list(equate)):
                out.differences.append(M("compare.steps", scenario=result.scenario))
            fa = Counter(finding_key(f, list(equate)) for f in first.findings(result.scenario))
            fb = Counter(finding_key(f, list(equate)) for f in second.findings(result.scenario))
            out.findings_compared += sum(fa.values())
            for key in sorted((fa - fb).elements()):
                out.differences.append(M("compare.finding_only", scenario=result.scenario, side="A", rule=key[1], location=key[4], message=key[6]))
            for key in sorted((fb - fa).elements()):
                out.differences.append(M("compare.finding_only", scenario=result.scenario, side="B", rule=key[1], location=key[4], message=key[6]))
    return out


def _bundle_in(folder: Path) -> Path | None:
    found = sorted(folder.glob("*.zip"))
    return found[-1] if found else None


def compare_paths(a: Path, b: Path, equate: list[tuple[str, str]] = ()) -> list[Comparison]:
    """Two bundles, or two folders of runs (one bundle per sub-folder) matched by name."""
    if a.is_file() and b.is_file():
        return [compare_bundles(a, b, equate)]
    comparisons = []
    names = sorted({p.name for p in a.iterdir() if p.is_dir()} | {p.name for p in b.iterdir() if p.is_dir()})
    for name in names:
        first, second = _bundle_in(a / name) if (a / name).is_dir() else None, _bundle_in(b / name) if (b / name).is_dir() else None
        if first is None or second is None:
            comparisons.append(Comparison(name, [M("compare.run_missing", side="A" if first is None else "B")]))
            continue
        comparisons.append(compare_bundles(first, second, equate, name))
    return comparisons
