"""Verdicts, findings and the evaluation record every check fills in."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable

from .messages import Localized, Text
from .secrets import scrub


class Verdict(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"
    INCONCLUSIVE = "INCONCLUSIVE"
    NOT_RUN = "NOT_RUN"
    MANUAL_PENDING = "MANUAL_PENDING"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def combine(cls, verdicts: "Iterable[Verdict | str]") -> "Verdict":
        """The verdict of a whole made of parts (:func:`combine`), for plugins that judge parts."""
        return combine([cls(v) for v in verdicts])


# When several verdicts combine (steps of a scenario, scenarios of a requirement), the
# first of this list that occurs wins: a proven failure outranks a tool error, which
# outranks everything that is merely not proven.
PRECEDENCE = (
    Verdict.FAIL,
    Verdict.ERROR,
    Verdict.INCONCLUSIVE,
    Verdict.MANUAL_PENDING,
    Verdict.NOT_RUN,
    Verdict.PASS,
)


def combine(verdicts: list[Verdict]) -> Verdict:
    """The verdict of a whole made of parts; an empty whole evaluated nothing: NOT_RUN."""
    if not verdicts:
        return Verdict.NOT_RUN
    present = set(verdicts)
    return next(v for v in PRECEDENCE if v in present)


class Severity(str, Enum):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def fails(self) -> bool:
        return self in (Severity.CRITICAL, Severity.ERROR)


@dataclass(frozen=True)
class Finding:
    """One observation: which rule, which requirement it proves, where, and what (a message
    rendered in every language when recorded)."""

    rule: str
    requirement: str
    severity: Severity
    location: str
    message: Localized
    artefact: str | None = None  # SHA-256 of the recorded artefact the location points into
    check: str | None = None  # the check step that made it

    def to_json(self) -> dict:
        d = {"rule": self.rule, "requirement": self.requirement, "severity": self.severity.value, "location": scrub(self.location),
             "message": self.message.texts(), "artefact": self.artefact}
        if self.check is not None:
            d["check"] = self.check
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Finding":
        return cls(
            rule=d["rule"],
            requirement=d["requirement"],
            severity=Severity(d["severity"]),
            location=d["location"],
            message=Text.of(d["message"]),
            artefact=d.get("artefact"),
            check=d.get("check"),
        )

    def text(self, lang: str | None = None) -> str:
        return self.message.render(lang)


@dataclass(frozen=True)
class Problem:
    """One rule something the software produced breaks: the rule's id, how grave, where (a
    path in a document, a segment, an address; empty when the whole input is the place), and
    why, in both languages. What the domain libraries (CDA, INS, XDS, MSSanté) return; a
    check turns each into a finding of its scenario's requirement."""

    rule: str
    severity: Severity
    location: str = ""
    message: Localized | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.location, str) or self.message is None or not hasattr(self.message, "render"):
            raise TypeError(f"Problem({self.rule!r}): location is a str, message a message (given {self.location!r}, {self.message!r})")

    def text(self, lang: str | None = None) -> str:
        return self.message.render(lang)  # type: ignore[union-attr]


@dataclass
class Evaluation:
    """What one check evaluated. The verdict is derived, never declared as PASS.

    ``check`` counts an assertion and records a finding when it does not hold;
    ``judged`` counts a unit judged whole (a document run through a validator, a patient
    read) whose problems are recorded as findings of their own;
    ``inconclusive`` records why a conclusion could not be reached;
    ``error`` records that the check could not run on its input.
    """

    requirement: str
    assertions: int = 0
    findings: list[Finding] = field(default_factory=list)
    inconclusive_reasons: list[Localized] = field(default_factory=list)
    errors: list[Localized] = field(default_factory=list)
    manual: list[Localized] = field(default_factory=list)
    sensitive: set[str] = field(default_factory=set)

    def check(
        self,
        holds: bool,
        *,
        rule: str,
        location: str,
        message: Localized,
        severity: Severity = Severity.ERROR,
        requirement: str | None = None,
        artefact: str | None = None,
    ) -> bool:
        self.assertions += 1
        if not holds:
            self.add(rule=rule, location=location, message=message, severity=severity, requirement=requirement, artefact=artefact)
        return holds

    def judged(self, units: int = 1) -> None:
        """Count ``units`` judged whole: each is an assertion, its problems are the findings
        added with :meth:`add` (so a unit with no finding held)."""
        self.assertions += units

    def add(
        self,
        *,
        rule: str,
        location: str,
        message: Localized,
        severity: Severity = Severity.INFO,
        requirement: str | None = None,
        artefact: str | None = None,
    ) -> None:
        """Record a finding that is not the outcome of an assertion (an observation)."""
        self.findings.append(Finding(rule, requirement or self.requirement, severity, location, message, artefact))

    def inconclusive(self, message: Localized) -> None:
        self.inconclusive_reasons.append(message)

    def error(self, message: Localized) -> None:
        self.errors.append(message)

    def holds_sensitive(self, kind: str) -> None:
        """Say that the evaluated inputs hold sensitive data of ``kind`` (``production-identity``):
        the bundle manifest lists it and the summary warns whoever receives the bundle."""
        self.sensitive.add(kind)

    def manual_pending(self, message: Localized) -> None:
        self.manual.append(message)

    @property
    def verdict(self) -> Verdict:
        if any(f.severity.fails for f in self.findings):
            return Verdict.FAIL
        if self.errors:
            return Verdict.ERROR
        if self.inconclusive_reasons:
            return Verdict.INCONCLUSIVE
        if self.manual:
            return Verdict.MANUAL_PENDING
        if self.assertions == 0:
            return Verdict.INCONCLUSIVE
        return Verdict.PASS
