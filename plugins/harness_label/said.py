"""Findings of one rule written out up to a bound, the others counted in one more finding: a
file of a million rows may break one rule a million times."""
from __future__ import annotations

from harness import Evaluation, Localized, Severity, catalogue

M = catalogue(__name__)

EXAMPLES = 50  # findings of one rule written out


class Said:
    """``fail`` records a finding (the first :data:`EXAMPLES` of each rule); ``close`` says how
    many more each rule had, at ``where``. With ``assertions``, each finding is also an assertion
    that did not hold (the checks that count what held with ``ev.judged``)."""

    def __init__(self, ev: Evaluation, where: str, artefact: str | None, *, assertions: bool = False) -> None:
        self.ev, self.where, self.artefact, self.assertions = ev, where, artefact, assertions
        self.counts: dict[str, int] = {}
        self.severity: dict[str, Severity] = {}

    def fail(self, rule: str, location: str, message: Localized, severity: Severity = Severity.ERROR) -> None:
        if self.assertions:
            self.ev.assertions += 1
        n = self.counts[rule] = self.counts.get(rule, 0) + 1
        self.severity[rule] = severity
        if n <= EXAMPLES:
            self.ev.add(rule=rule, location=location, message=message, severity=severity, artefact=self.artefact)

    def close(self) -> None:
        for rule, n in sorted(self.counts.items()):
            if n > EXAMPLES:
                self.ev.add(rule=rule, location=self.where, message=M("said.more", count=n - EXAMPLES, rule=rule), severity=self.severity[rule],
                            artefact=self.artefact)
