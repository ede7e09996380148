"""Offline replay: re-run every check of a bundle from the bundle alone, compare verdicts."""
from __future__ import annotations

import socket
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterator

import pluggy

from ..running.assembly import target_schema
from ..evidence.bundle import Bundle
from ..running.checking import evaluate
from ..errors import BundleError
from ..running.context import Artefact
from ..evidence.recorder import canonical_json
from ..evidence.manifest import SUMMARY_FORMATS, Manifest, requirement_verdicts
from ..messages import LANGS, Message, catalogue
from ..running.plugins import core_version, plugin_versions
from ..results import ScenarioResult
from ..running.scenarios import Catalogue, Scenario
from .sealing import report_sections
from ..evidence.summary import render_summary
from ..running.target import Target
from ..verdicts import Finding, Verdict

if TYPE_CHECKING:
    from ..running.assembly import Assembly

M = catalogue(__name__)


class NetworkDisabled(OSError):
    pass


@contextmanager
def no_network() -> Iterator[None]:
    """Any connection attempt fails while replaying: checks must not depend on the network."""

    def refuse(*args: object, **kwargs: object):
        raise NetworkDisabled("network access is disabled during replay")

    saved = socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo
    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse  # type: ignore[method-assign]
    socket.create_connection = refuse  # type: ignore[assignment]
    socket.getaddrinfo = refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo = saved  # type: ignore[method-assign]


@dataclass
class Difference:
    """What the bundle says and what replaying it says, for one scenario or requirement."""

    subject: str
    recorded: str
    replayed: str
    detail: Message

    @property
    def scenario(self) -> str:
        return self.subject


@dataclass
class ReplayReport:
    format: str = ""
    scenarios: int = 0
    differences: list[Difference] = field(default_factory=list)
    version_notes: list[Message] = field(default_factory=list)
    # what replay derived: the record with its results and requirement verdicts replaced (what
    # ``harness report`` renders), and the findings of each replayed scenario
    manifest: Manifest | None = None
    findings: dict[str, list[Finding]] = field(default_factory=dict)

    def differs(self, subject: str) -> list[Difference]:
        return [d for d in self.differences if d.subject == subject]

    @property
    def identical(self) -> bool:
        return not self.differences


def _version_notes(bundle: Bundle, pm: pluggy.PluginManager | None) -> list[Message]:
    recorded = bundle.record
    notes = []
    if recorded.harness.get("version") != core_version():
        notes.append(M("replay.core_version", recorded=recorded.harness.get("version"), now=core_version()))
    if pm is not None:
        now = plugin_versions(pm)
        for name, ver in recorded.plugins.items():
            if now.get(name) != ver:
                notes.append(M("replay.plugin_version", name=name, recorded=ver, now=now.get(name, "-")))
    return notes


# what decides a scenario's verdict: a recorded definition must say the same as the installed one
DEFINING = ("requirements", "collect", "checks", "collect_mode")


def _definition(scenario: dict) -> dict:
    return {k: scenario.get(k, "all" if k == "collect_mode" else []) for k in DEFINING}


def _replay_result(bundle: Bundle, result: ScenarioResult, scenario: Scenario, target: Target, assembly: "Assembly",
                   report: ReplayReport) -> ScenarioResult:
    """The result the installed checks give on the recorded inputs; each difference reported."""
    sid = result.scenario
    if result.reason is not None:  # NOT_RUN: nothing was evaluated; the record must say so throughout
        if result.verdict is not Verdict.NOT_RUN or result.checks or result.inputs:
            report.differences.append(Difference(sid, result.verdict.value, Verdict.NOT_RUN.value, M("replay.not_run_forged")))
        return ScenarioResult.not_run(sid, result.requirements, result.reason)
    recorded = bundle.record
    inputs = {name: Artefact(digest, **recorded.artefacts[digest].to_json()) for name, digest in result.inputs.items()}
    verdict, checks, findings = evaluate(scenario, inputs, bundle.read_artefact, target, assembly.registry, result.collect,
                                         recorded.masking.get("salt", ""), bundle.open_artefact)
    if verdict is not result.verdict:
        report.differences.append(Difference(sid, result.verdict.value, verdict.value, M("replay.verdict")))
    elif canonical_json([c.to_json() for c in checks]) != canonical_json([c.to_json() for c in result.checks]):
        report.differences.append(Difference(sid, result.verdict.value, verdict.value, M("replay.checks")))
    else:
        try:
            recorded_findings = bundle.findings(sid)
        except BundleError as exc:  # a findings member that is not one: said, the other scenarios go on
            report.differences.append(Difference(sid, result.verdict.value, verdict.value, exc.detail))
        else:
            if canonical_json([f.to_json() for f in findings]) != canonical_json(recorded_findings):
                report.differences.append(Difference(sid, result.verdict.value, verdict.value, M("replay.findings")))
    return ScenarioResult(sid, list(scenario.requirements), verdict, result.collect, result.inputs, checks, findings)


def _compare_requirements(bundle: Bundle, results: list[ScenarioResult], catalogue: Catalogue, report: ReplayReport) -> dict:
    """Requirement verdicts derived again from the replayed results, against the recorded ones."""
    derived = requirement_verdicts(catalogue, results)
    recorded = bundle.record.requirements
    for req in sorted(set(derived) | set(recorded)):
        now, then = derived.get(req, {}), recorded.get(req, {})
        if now.get("verdict") != then.get("verdict") or now.get("scenarios") != then.get("scenarios"):
            report.differences.append(Difference(req, str(then.get("verdict", "-")), str(now.get("verdict", "-")), M("replay.requirement")))
    return derived


def _compare_summaries(bundle: Bundle, manifest: Manifest, findings: dict[str, list[Finding]], assembly: "Assembly",
                       report: ReplayReport) -> None:
    """The human summaries rendered again from what replay derived, against the sealed ones."""
    if bundle.record.format not in SUMMARY_FORMATS:
        report.version_notes.append(M("replay.summary_format", format=bundle.record.format))
        return
    for lang in LANGS:
        sections = report_sections(assembly.pm, manifest, findings, bundle.read_artefact, lang, [])
        if render_summary(manifest, findings, lang, sections=sections).encode("utf-8") != bundle.read_member(f"summary.{lang}.txt"):
            report.differences.append(Difference(f"summary.{lang}.txt", "-", "-", M("replay.summary")))


def replay_bundle(bundle: Bundle, assembly: "Assembly") -> ReplayReport:
    """Re-derive everything a bundle concludes from its artefacts alone, with the installed
    scenario definitions and checks: each check step, finding, scenario and requirement
    verdict, and the summaries; every difference is reported."""
    recorded = bundle.record
    report = ReplayReport(format=recorded.format, version_notes=_version_notes(bundle, assembly.pm))
    target = Target.from_record(recorded.target, target_schema(assembly.pm))
    definitions = {s["id"]: s for s in recorded.scenarios}
    results: list[ScenarioResult] = []
    with no_network():
        for result in recorded.results:
            report.scenarios += 1
            scenario = assembly.catalogue.scenarios.get(result.scenario)
            if scenario is None:
                report.differences.append(Difference(result.scenario, result.verdict.value, "-", M("replay.unknown_scenario")))
                continue
            then, now = _definition(definitions[result.scenario]), _definition(scenario.to_json())
            if then != now:
                fields = ", ".join(k for k in DEFINING if then[k] != now[k])
                report.differences.append(Difference(result.scenario, "-", "-", M("replay.definition", fields=fields)))
            results.append(_replay_result(bundle, result, scenario, target, assembly, report))
    requirements = _compare_requirements(bundle, results, assembly.catalogue, report)
    # what a requirement says (statement, source, level) is what was proven then, as sealed;
    # replay derives its verdict and scenarios, and notes a statement this version words otherwise
    for req, derived in requirements.items():
        then = recorded.requirements.get(req)
        if then is None:
            continue
        if any(then.get(k) != derived.get(k) for k in ("text", "source", "level")):
            report.version_notes.append(M("replay.requirement_text", requirement=req))
        requirements[req] = {**then, "verdict": derived["verdict"], "scenarios": derived["scenarios"]}
    report.manifest = replace(recorded, results=results, requirements=requirements)
    report.findings = {r.scenario: r.findings for r in results}
    _compare_summaries(bundle, report.manifest, report.findings, assembly, report)
    _compare_reports(bundle, report)
    return report


def _compare_reports(bundle: Bundle, report: ReplayReport) -> None:
    """The reports sealed inside (``reports/…``: the HTML page, the coverage matrix) rendered
    again from what replay derived; each member that differs is named. Rendering is this
    version's: a bundle sealed by another version of the core is not compared byte for byte
    (a note says so; ``harness report`` renders its reports from the re-derived verdicts)."""
    from ..reporting import report as reports

    sealed = sorted(name for name in bundle.manifest["members"] if name.startswith(reports.REPORTS))
    if not sealed or report.manifest is None:
        return
    if bundle.record.harness.get("version") != core_version():
        report.version_notes.append(M("replay.reports_version", version=bundle.record.harness.get("version") or "-"))
        return
    lang = bundle.record.options.get("lang") or LANGS[0]
    source = reports.Source.derived(report.manifest, report.findings, bundle.read_artefact, bundle.read_artefact_head)
    try:
        rendered = reports.members(source, lang)
    except Exception as exc:  # a renderer's failure is said, the verdicts stand
        report.differences.append(Difference(reports.REPORTS, "-", "-", M("replay.reports_failed", error=f"{type(exc).__name__}: {exc}")))
        return
    for name in sorted(set(sealed) | set(rendered)):
        if name not in sealed or name not in rendered or rendered[name] != bundle.read_member(name):
            report.differences.append(Difference(name, "-", "-", M("replay.report_member")))
