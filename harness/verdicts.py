"""Verdicts, findings and the evaluation record every check fills in."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum


class Verdict(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"
    INCONCLUSIVE = "INCONCLUSIVE"
    NOT_RUN = "NOT_RUN"
    MANUAL_PENDING = "MANUAL_PENDING"

    def __str__(self) -> str:
        return self.value


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
    """One observation: which rule, which requirement it proves, where, and what, in FR and EN."""

    rule: str
    requirement: str
    severity: Severity
    location: str
    message: dict[str, str]
    artefact: str | None = None  # SHA-256 of the recorded artefact the location points into

    def to_dict(self) -> dict:
        d = asdict(self)
        d["severity"] = self.severity.value
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Finding":
        return cls(
            rule=d["rule"],
            requirement=d["requirement"],
            severity=Severity(d["severity"]),
            location=d["location"],
            message=dict(d["message"]),
            artefact=d.get("artefact"),
        )

    def text(self, lang: str = "fr") -> str:
        return self.message.get(lang) or self.message["fr"]


@dataclass
class Evaluation:
    """What one check evaluated. The verdict is derived, never declared as PASS.

    ``check`` counts an assertion and records a finding when it does not hold;
    ``inconclusive`` records why a conclusion could not be reached;
    ``error`` records that the check could not run on its input.
    """

    requirement: str
    assertions: int = 0
    findings: list[Finding] = field(default_factory=list)
    inconclusive_reasons: list[dict[str, str]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    manual: list[dict[str, str]] = field(default_factory=list)
    sensitive: set[str] = field(default_factory=set)

    def check(
        self,
        holds: bool,
        *,
        rule: str,
        location: str,
        fr: str,
        en: str,
        severity: Severity = Severity.ERROR,
        requirement: str | None = None,
        artefact: str | None = None,
    ) -> bool:
        self.assertions += 1
        if not holds:
            self.add(rule=rule, location=location, fr=fr, en=en, severity=severity,
                     requirement=requirement, artefact=artefact)
        return holds

    def add(
        self,
        *,
        rule: str,
        location: str,
        fr: str,
        en: str,
        severity: Severity = Severity.INFO,
        requirement: str | None = None,
        artefact: str | None = None,
    ) -> None:
        """Record a finding that is not the outcome of an assertion (an observation)."""
        self.findings.append(
            Finding(rule, requirement or self.requirement, severity, location, {"fr": fr, "en": en}, artefact)
        )

    def inconclusive(self, *, fr: str, en: str) -> None:
        self.inconclusive_reasons.append({"fr": fr, "en": en})

    def error(self, *, fr: str, en: str) -> None:
        self.errors.append({"fr": fr, "en": en})

    def holds_sensitive(self, kind: str) -> None:
        """Say that the evaluated inputs hold sensitive data of ``kind`` (``production-identity``):
        the bundle manifest lists it and the summary warns whoever receives the bundle."""
        self.sensitive.add(kind)

    def manual_pending(self, *, fr: str, en: str) -> None:
        self.manual.append({"fr": fr, "en": en})

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
