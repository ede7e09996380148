"""The human summary of a run, rendered from its manifest: verdicts per requirement, what
did not pass, the sections plugins add (``harness_report_sections``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .manifest import Manifest
from ..messages import Localized, catalogue
from ..results import StepStatus
from ..verdicts import Finding, Verdict

M = catalogue(__name__)

_ICON = {"PASS": "✔", "FAIL": "✘", "ERROR": "!", "INCONCLUSIVE": "?", "NOT_RUN": "-", "MANUAL_PENDING": "…"}


@dataclass
class ReportSection:
    """A block a plugin adds to the summary: a title and lines."""

    title: Localized
    lines: list[Localized] = field(default_factory=list)


@dataclass
class SummaryContext:
    """What a plugin's ``harness_report_sections`` sees: the sealed run, in one language."""

    manifest: Manifest
    findings: dict[str, list[Finding]]
    read_artefact: Callable[[str], bytes]
    lang: str

    def artefacts_labelled(self, label: str) -> list[str]:
        return [d for d, meta in sorted(self.manifest.artefacts.items()) if meta.label == label]


def _not_passed(manifest: Manifest, findings: dict[str, list[Finding]], lang: str) -> list[str]:
    lines = []
    for r in manifest.results:
        for f in findings.get(r.scenario, []):
            if f.severity.fails:
                lines.append(f"    [{f.rule}] {f.requirement} @ {f.location}: {f.text(lang)}")
        for c in r.checks:
            for reason in c.reasons:
                lines.append(f"    ({c.verdict.value}) {r.scenario}/{c.name}: {reason.render(lang)}")
        for c in r.collect:
            if c.status is not StepStatus.OK and c.message is not None:
                label = Verdict.NOT_RUN.value if c.status is StepStatus.NOT_APPLICABLE else Verdict.ERROR.value
                lines.append(f"    ({label}) {r.scenario}/{c.name}: {c.message.render(lang)}")
            lines.extend(f"    ({Verdict.ERROR.value}) {r.scenario}/{c.name} {item}: {reason.render(lang)}" for item, reason in c.refused)
        if r.reason is not None:
            lines.append(f"    ({Verdict.NOT_RUN.value}) {r.scenario}: {r.reason.render(lang)}")
    return lines


def render_summary(manifest: Manifest, findings: dict[str, list[Finding]], lang: str, *, sections: list[ReportSection] = (),
                   bundle_path: str | None = None) -> str:
    """A short text: one line per requirement, what did not pass, plugin sections, the bundle."""
    lines = [M("summary.title", run_id=manifest.run_id).render(lang)]
    for req, info in manifest.requirements.items():
        v = info["verdict"]
        lines.append(f"  {_ICON.get(v, ' ')} {v:<14} {req:<18} {info['text'][lang]}")
    lines.extend(_not_passed(manifest, findings, lang))
    for section in sections:
        lines.append(f"  {section.title.render(lang)}")
        lines.extend(f"    {line.render(lang)}" for line in section.lines)
    for incident in manifest.incidents:
        lines.append(M("summary.incident", text=incident).render(lang))
    for kind in manifest.sensitive_data:
        lines.append(M("summary.sensitive", kind=kind).render(lang))
    if bundle_path:
        lines.append(M("summary.bundle", path=bundle_path).render(lang))
    return "\n".join(lines) + "\n"
