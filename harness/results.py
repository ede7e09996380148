"""What a scenario run produces: its collect steps, check steps and findings, typed.

Each type has one serialisation, ``to_json`` / ``from_json``, which is what the manifest
(``results``), the findings members of a bundle and pytest-xdist's transport between
processes carry. Messages are recorded rendered in every language; read back they are
:class:`~harness.messages.Text`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .messages import Localized, Text
from .verdicts import Finding, Verdict


class StepStatus(str, Enum):
    OK = "ok"
    ERROR = "error"
    NOT_APPLICABLE = "not-applicable"  # the target does not configure what the step needs


@dataclass(frozen=True)
class ArtefactMeta:
    size: int
    media_type: str
    label: str

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "media_type": self.media_type, "label": self.label}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ArtefactMeta":
        return cls(int(d["size"]), str(d["media_type"]), str(d["label"]))


@dataclass
class CollectStep:
    """One collector of a scenario: what it produced (input name -> SHA-256) or why not, and
    what it did not take (a document over the size limit, a download that failed): each
    refusal makes the scenario an ERROR, since what was not judged cannot have passed."""

    name: str
    status: StepStatus = StepStatus.OK
    message: Localized | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    refused: list[tuple[str, Localized]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "status": self.status.value}
        if self.message is not None:
            d["message"] = self.message.texts()
        if self.outputs:
            d["outputs"] = dict(sorted(self.outputs.items()))
        if self.refused:
            d["refused"] = [{"item": item, "reason": reason.texts()} for item, reason in self.refused]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "CollectStep":
        return cls(d["name"], StepStatus(d["status"]), Text.of(d["message"]) if "message" in d else None, dict(d.get("outputs", {})),
                   [(r["item"], Text.of(r["reason"])) for r in d.get("refused", [])])


@dataclass
class CheckStep:
    """One check of a scenario: its verdict, how many assertions it evaluated, why it did not pass."""

    name: str
    verdict: Verdict
    assertions: int
    reasons: list[Localized] = field(default_factory=list)
    findings: int = 0
    sensitive: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "verdict": self.verdict.value, "assertions": self.assertions,
                             "reasons": [r.texts() for r in self.reasons], "findings": self.findings}
        if self.sensitive:
            d["sensitive"] = sorted(self.sensitive)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "CheckStep":
        return cls(d["name"], Verdict(d["verdict"]), int(d["assertions"]), [Text.of(r) for r in d.get("reasons", [])],
                   int(d.get("findings", 0)), list(d.get("sensitive", [])))


@dataclass
class ScenarioResult:
    """A scenario's whole result. ``reason`` is set when the scenario did not run at all."""

    scenario: str
    requirements: list[str]
    verdict: Verdict
    collect: list[CollectStep] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    checks: list[CheckStep] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    artefacts: dict[str, ArtefactMeta] = field(default_factory=dict)
    reason: Localized | None = None

    @classmethod
    def not_run(cls, scenario: str, requirements: list[str], reason: Localized) -> "ScenarioResult":
        return cls(scenario, list(requirements), Verdict.NOT_RUN, reason=reason)

    @property
    def sensitive(self) -> set[str]:
        return {kind for c in self.checks for kind in c.sensitive}

    def reasons(self) -> list[tuple[str, Localized]]:
        """Why the scenario did not pass, step by step: (step, message)."""
        out = [(c.name, r) for c in self.checks for r in c.reasons]
        out += [(c.name, c.message) for c in self.collect if c.status is not StepStatus.OK and c.message is not None]
        out += [(c.name, reason) for c in self.collect for _, reason in c.refused]
        return out

    def record(self) -> dict[str, Any]:
        """The manifest's entry: everything but the findings and the artefact index, which
        the bundle keeps in members and in the manifest's own index."""
        d: dict[str, Any] = {
            "scenario": self.scenario,
            "requirements": list(self.requirements),
            "verdict": self.verdict.value,
            "collect": [c.to_json() for c in self.collect],
            "inputs": dict(sorted(self.inputs.items())),
            "checks": [c.to_json() for c in self.checks],
        }
        if self.reason is not None:
            d["reason"] = self.reason.texts()
        return d

    def to_json(self) -> dict[str, Any]:
        """The whole result (pytest-xdist carries it from a worker to the controller)."""
        return {**self.record(), "findings": [f.to_json() for f in self.findings],
                "artefacts": {d: m.to_json() for d, m in sorted(self.artefacts.items())}}

    @classmethod
    def from_json(cls, d: dict[str, Any], findings: list[dict] | None = None) -> "ScenarioResult":
        """A result from :meth:`to_json`, or from a manifest entry and its findings member."""
        return cls(
            scenario=d["scenario"],
            requirements=list(d["requirements"]),
            verdict=Verdict(d["verdict"]),
            collect=[CollectStep.from_json(c) for c in d.get("collect", [])],
            inputs=dict(d.get("inputs", {})),
            checks=[CheckStep.from_json(c) for c in d.get("checks", [])],
            findings=[Finding.from_json(f) for f in (findings if findings is not None else d.get("findings", []))],
            artefacts={k: ArtefactMeta.from_json(v) for k, v in d.get("artefacts", {}).items()},
            reason=Text.of(d["reason"]) if "reason" in d else None,
        )

