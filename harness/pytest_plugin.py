"""The pytest face of the harness: ``pytest --scenario NAME [--target FILE]``.

Without ``--scenario`` this plugin does nothing, so plain ``pytest`` runs ordinary tests.
With it, the scenario files are the only test items (``tests/`` is never collected), each
scenario runs live, and the controller seals one evidence bundle at the end, also under
pytest-xdist where workers share a content-addressed staging store.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .errors import HarnessError
from .evidence import Recorder, utc_now
from .i18n import LANGS, resolve_lang, t
from .plugins import blocked_plugins, harness_version, plugin_versions
from .report import render_summary
from .run import RunInfo, new_run_id, seal
from .runner import LiveSession
from .scenarios import Scenario
from .setup import Assembly, assemble, resolve_target
from .target import Target
from .verdicts import Verdict

DEMO_SERVICE = "demo-vendor"


@dataclass
class HarnessState:
    assembly: Assembly
    selected: list[Scenario]
    target: Target
    lang: str
    offline: bool
    info: RunInfo
    is_worker: bool
    live: LiveSession | None = None
    bundle_path: Path | None = None
    bundle_error: str | None = None
    manifest: dict | None = None
    findings: dict = field(default_factory=dict)


STATE_KEY = pytest.StashKey[HarnessState]()
RESULT_PROPERTY = "harness_result"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "e-health conformity harness")
    group.addoption("--scenario", action="append", default=[], dest="harness_scenarios", metavar="NAME",
                    help="run scenarios by id or tag (repeatable); 'all' runs every scenario")
    group.addoption("--scenario-dir", action="append", default=[], dest="harness_scenario_dirs", metavar="DIR",
                    help="an extra folder of scenario files (repeatable)")
    group.addoption("--target", dest="harness_target", metavar="FILE", default=None,
                    help="target description (TOML); default: the embedded demo vendor")
    group.addoption("--set", action="append", default=[], dest="harness_target_overrides", metavar="SECTION.KEY=VALUE",
                    help="set one target value from the command line (repeatable), e.g. cda.kit=path/to/TestContenuCDA")
    group.addoption("--evidence-dir", dest="harness_evidence_dir", metavar="DIR", default="reports",
                    help="where the evidence bundle is written (default: reports)")
    group.addoption("--lang", dest="harness_lang", choices=LANGS, default=None,
                    help="language of messages: fr (default) or en")
    group.addoption("--offline", dest="harness_offline", action="store_true", default=False,
                    help="never reach beyond loopback")
    group.addoption("--defect", dest="harness_defects", action="append", default=[], metavar="NAME",
                    help="inject a named defect into the embedded demo vendor (repeatable)")


def _state(config: pytest.Config) -> HarnessState | None:
    return config.stash.get(STATE_KEY, None)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    names = config.getoption("harness_scenarios")
    if not names:
        return
    lang = resolve_lang(config.getoption("harness_lang"))
    try:
        assembly = assemble(config.getoption("harness_scenario_dirs"))
        selected = assembly.catalogue.select(names)
        target = resolve_target(assembly.pm, config.getoption("harness_target"), config.getoption("harness_target_overrides"))
        defects = config.getoption("harness_defects")
        if defects:
            if DEMO_SERVICE not in target.services:
                raise HarnessError(
                    f"--defect ne s'applique qu'au vendeur de démonstration ; la cible {target.path} ne déclare pas [services.{DEMO_SERVICE}]",
                    f"--defect applies to the embedded demo vendor only; target {target.path} has no [services.{DEMO_SERVICE}]",
                )
            target.set_service_option(DEMO_SERVICE, "defects", sorted(set(defects)))
    except HarnessError as exc:
        raise pytest.UsageError(exc.message(lang)) from None
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        shared = workerinput["harness_run"]
        info = RunInfo(shared["run_id"], shared["started_at"], Path(shared["evidence_dir"]), salt=shared["salt"])
    else:
        evidence = Path(config.getoption("harness_evidence_dir")).resolve()
        info = RunInfo(new_run_id(), utc_now(), evidence)
    state = HarnessState(assembly, selected, target, lang, config.getoption("harness_offline"), info, workerinput is not None)
    config.stash[STATE_KEY] = state
    for tag in sorted({tag for s in assembly.catalogue.scenarios.values() for tag in s.tags}):
        config.addinivalue_line("markers", f"{tag.replace('-', '_')}: scenarios tagged {tag}")
    # Scenario runs collect scenarios only: drop path arguments (and testpaths).
    config.args[:] = []


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: every worker joins the controller's run and staging store."""
    state = _state(node.config)
    if state is not None:
        node.workerinput["harness_run"] = {
            "run_id": state.info.run_id,
            "started_at": state.info.started_at,
            "evidence_dir": str(state.info.evidence_dir),
            "salt": state.info.salt,
        }


class ScenarioFile(pytest.Collector):
    def __init__(self, *, scenarios: list[Scenario], **kw: Any) -> None:
        super().__init__(**kw)
        self.scenarios = scenarios

    def collect(self) -> list[pytest.Item]:
        return [ScenarioItem.from_parent(self, name=s.id, scenario=s) for s in self.scenarios]


class ScenarioNotPassed(Exception):
    def __init__(self, result: dict) -> None:
        super().__init__(result["verdict"])
        self.result = result


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Scenario, **kw: Any) -> None:
        super().__init__(**kw)
        self.scenario = scenario
        for tag in scenario.tags:
            self.add_marker(tag.replace("-", "_"))

    def runtest(self) -> None:
        state = self.config.stash[STATE_KEY]
        if state.live is None:
            state.live = LiveSession(
                state.assembly.pm, state.assembly.registry, state.target,
                Recorder(state.info.store, state.target.secret_values()),
                lang=state.lang, offline=state.offline, salt=state.info.salt,
            )
        result = state.live.run_scenario(self.scenario)
        self.user_properties.append((RESULT_PROPERTY, result))
        verdict = result["verdict"]
        if verdict == Verdict.PASS.value:
            return
        if verdict in (Verdict.FAIL.value, Verdict.ERROR.value):
            raise ScenarioNotPassed(result)
        reasons = [r[state.lang] for c in result["checks"] for r in c["reasons"]]
        reasons += [c["message"][state.lang] for c in result["collect"] if c["status"] != "ok"]
        pytest.skip(f"{verdict}: " + "; ".join(reasons))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioNotPassed):
            lang = self.config.stash[STATE_KEY].lang
            r = excinfo.value.result
            lines = [f"{r['verdict']}: {self.scenario.title[lang]} ({', '.join(r['requirements'])})"]
            for c in r["collect"]:
                if c["status"] != "ok":
                    lines.append(f"  [collect {c['name']}] {c['message'][lang]}")
            for c in r["checks"]:
                for reason in c["reasons"]:
                    lines.append(f"  [{c['name']}] {c['verdict']}: {reason[lang]}")
            for f in r["findings"]:
                lines.append(f"  [{f['rule']}] {f['severity']} {f['requirement']} @ {f['location']}: {f['message'][lang]}")
            return "\n".join(lines)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[str, int | None, str]:
        # Shown relative to the scenarios folder, wherever the package is installed.
        return f"scenarios/{self.scenario.file.name}", None, f"scenario {self.scenario.id}"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = _state(config)
    if state is None:
        return
    by_file: dict[Path, list[Scenario]] = {}
    for s in state.selected:
        by_file.setdefault(s.file, []).append(s)
    collected: list[pytest.Item] = []
    for file, scenarios in by_file.items():
        node = ScenarioFile.from_parent(session, name=file.name, nodeid=f"scenarios/{file.name}", scenarios=scenarios)
        # Report the collection like pytest's own collectors, so counts and -k work.
        rep = session.ihook.pytest_make_collect_report(collector=node)
        session.ihook.pytest_collectreport(report=rep)
        collected.extend(i for i in rep.result if isinstance(i, pytest.Item))
    items[:] = collected


def _result_of(report: pytest.TestReport) -> dict | None:
    for prop in report.user_properties:
        name, value = prop
        if name == RESULT_PROPERTY:
            return value
    return None


_STATUS = {
    "PASS": ("passed", ".", "PASS"),
    "FAIL": ("failed", "F", "FAIL"),
    "ERROR": ("error", "E", "ERROR"),
    "INCONCLUSIVE": ("inconclusive", "I", "INCONCLUSIVE"),
    "NOT_RUN": ("not run", "N", "NOT_RUN"),
    "MANUAL_PENDING": ("manual pending", "M", "MANUAL_PENDING"),
}


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    if report.when != "call" or _state(config) is None:
        return None
    result = _result_of(report)
    return _STATUS[result["verdict"]] if result else None


class HarnessResults:
    """Gathers scenario results where reports arrive: the controller, or a serial run."""

    def __init__(self, state: HarnessState) -> None:
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            result = _result_of(report)
            if result is not None:
                self.state.info.results[result["scenario"]] = result


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    state = _state(session.config)
    if state is not None and not state.is_worker:
        session.config.pluginmanager.register(HarnessResults(state), "harness-results")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _state(session.config)
    if state is None:
        return
    if state.live is not None:
        state.live.close()
    if state.is_worker or session.config.option.collectonly:
        return
    try:
        state.bundle_path, state.manifest, state.findings = seal(
            state.info,
            catalogue=state.assembly.catalogue,
            selected=state.selected,
            harness_version=harness_version(),
            plugins=plugin_versions(state.assembly.pm),
            blocked=blocked_plugins(),
            target=state.target.sanitized(),
            target_file=state.target.path.name if state.target.path else "-",
            options={
                "lang": state.lang,
                "offline": state.offline,
                "scenarios": list(session.config.getoption("harness_scenarios")),
                "workers": getattr(session.config.option, "numprocesses", None) or 0,
            },
        )
    except Exception as exc:  # the run's result must still be visible; the exit code says it failed
        state.bundle_error = f"{type(exc).__name__}: {exc}"
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = _state(config)
    if state is None or state.is_worker or (state.manifest is None and state.bundle_error is None):
        return
    terminalreporter.section("harness")
    if state.manifest is not None:
        text = render_summary(state.manifest, state.findings, state.lang, str(state.bundle_path))
        for line in text.rstrip("\n").splitlines():
            terminalreporter.write_line(line)
    elif state.bundle_error:
        terminalreporter.write_line(t("summary_bundle_failed", state.lang, error=state.bundle_error), red=True)
