"""Running a scenario's checks on recorded inputs: the one place verdicts are derived.

The live run and ``harness verify --replay`` both call :func:`evaluate`, which is what
makes replay faithful.
"""
from __future__ import annotations

from typing import BinaryIO, Callable, Mapping

from .context import Artefact, CheckContext
from ..errors import HarnessError
from ..messages import catalogue
from ..results import CheckStep, CollectStep, StepStatus
from .scenarios import Scenario
from .steps import Check, Registry
from .target import Target
from ..verdicts import Evaluation, Finding, Verdict, combine

M = catalogue(__name__)


def _skipped(scenario: Scenario, collect: list[CollectStep]) -> bool:
    """Whether the target does not configure what the scenario needs (NOT_RUN). A step that
    failed is never hidden behind a later one that did not apply: that is an ERROR."""
    if any(c.status is StepStatus.ERROR for c in collect):
        return False
    not_applicable = [c.status is StepStatus.NOT_APPLICABLE for c in collect]
    if scenario.collect_mode == "any" and collect:
        return all(not_applicable)  # runs on whatever the configured collectors gathered
    return any(not_applicable)


def _run_check(name: str, fn: Check | None, ctx: CheckContext, ev: Evaluation) -> None:
    if fn is None:
        ev.error(M("step.unknown", kind="check", name=name))
        return
    try:
        fn(ctx, ev)
    except HarnessError as exc:
        ev.error(exc.detail)
    except Exception as exc:  # a bug in a check must not crash the run: ERROR
        ev.error(M("check.crashed", name=name, error=f"{type(exc).__name__}: {exc}"))


def _step(name: str, ev: Evaluation) -> CheckStep:
    verdict = ev.verdict
    reasons = ev.errors + ev.inconclusive_reasons + ev.manual
    if verdict is Verdict.INCONCLUSIVE and not reasons:
        reasons = [M("nothing_evaluated")]
    return CheckStep(name, verdict, ev.assertions, reasons, len(ev.findings), sorted(ev.sensitive))


def evaluate(
    scenario: Scenario,
    inputs: Mapping[str, Artefact],
    load: Callable[[str], bytes],
    target: Target,
    registry: Registry,
    collect: list[CollectStep],
    salt: str = "",
    opener: Callable[[str], BinaryIO] | None = None,
) -> tuple[Verdict, list[CheckStep], list[Finding]]:
    """Run the scenario's checks on recorded inputs: (verdict, check steps, findings).

    ``salt`` is the run's masking salt (:meth:`CheckContext.mask`), recorded in the
    manifest so that replay masks the same values the same way.
    """
    steps: list[CheckStep] = []
    findings: list[Finding] = []
    if _skipped(scenario, collect):
        return Verdict.NOT_RUN, steps, findings
    verdicts = [Verdict.ERROR for c in collect if c.status is StepStatus.ERROR or c.refused]
    for name in scenario.checks:
        ev = Evaluation(requirement=scenario.requirements[0])
        fn = registry.checks.get(name)
        ctx = CheckContext(inputs, load, target, scenario.id, salt, registry.extractors, getattr(fn, "reads", None), opener)
        _run_check(name, fn, ctx, ev)
        step = _step(name, ev)
        steps.append(step)
        findings.extend(Finding(f.rule, f.requirement, f.severity, f.location, f.message, f.artefact, name) for f in ev.findings)
        verdicts.append(step.verdict)
    return combine(verdicts), steps, findings
