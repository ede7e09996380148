"""The pytest face of the harness: ``pytest --scenario NAME [--target FILE]``.

Without ``--scenario`` this plugin does nothing, so plain ``pytest`` runs ordinary tests.
With it, the scenario files are the only test items (``tests/`` is never collected), each
scenario runs live, and the controller seals one evidence bundle at the end, also under
pytest-xdist where workers share a content-addressed staging store.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy
import pytest

from ..reporting import allure_results
from .. import secrets
from ..running.assembly import Assembly, assemble, resolve_target
from ..errors import HarnessError
from .events import EventLog
from ..evidence.recorder import Recorder, utc_now
from .live import LiveSession
from ..messages import LANGS, Text, catalogue, resolve_lang
from ..running.plugins import blocked_plugins, core_version, get_plugin_manager, plugin_versions, rules_fingerprints
from ..results import ScenarioResult
from ..secrets import Scrubber
from ..running.scenarios import Scenario
from ..running.steps import alters
from ..proof.sealing import RunInfo, RunLock, Sealed, clean_debris, new_run_id, seal, staging_dir
from ..evidence.summary import render_summary
from ..running.target import Target
from ..verdicts import Verdict

M = catalogue(__name__)


def _help(key: str) -> str:
    """Option help in the language of HARNESS_LANG (French by default): it is shown before --lang is read."""
    return M(key).render()


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
    sealed: Sealed | None = None
    bundle_error: str | None = None
    lock: RunLock | None = None
    signer: Any = None  # harness.evidence.signature.Signer, loaded at start (a bad key fails before anything runs)
    sign_warning: Any = None  # why the signature carries no timestamp, when one was asked
    reports: list = None  # the reports written beside the bundle
    report_error: str | None = None
    hub: Any = None  # harness.session.events.EventHub: what every process is doing (controller)
    before_altering: Any = None  # the run's scenarios that alter nothing (pytest_collection_finish)
    poller: Any = None
    progress: Any = None  # harness.session.events.Progress: holds a copy of the terminal's descriptor
    view: Any = None  # harness.session.liveview.LiveView, with --live


STATE_KEY = pytest.StashKey[HarnessState]()
RESULT_PROPERTY = "harness_result"
INCIDENTS_OUTPUT = "harness_incidents"

# The harness's plugin manager, made when pytest parses options so that plugins can add
# theirs (harness_addoption); a broken plugin is reported when a scenario run asks for it.
_pm: pluggy.PluginManager | None = None
_pm_error: HarnessError | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    global _pm, _pm_error
    group = parser.getgroup("harness", "e-health conformity harness")
    group.addoption("--scenario", action="append", default=[], dest="harness_scenarios", metavar="NAME",
                    help=_help("help.scenario"))
    group.addoption("--scenario-dir", action="append", default=[], dest="harness_scenario_dirs", metavar="DIR",
                    help=_help("help.scenario_dir"))
    group.addoption("--target", dest="harness_target", metavar="FILE", default=None,
                    help=_help("help.target"))
    group.addoption("--set", action="append", default=[], dest="harness_target_overrides", metavar="SECTION.KEY=VALUE",
                    help=_help("help.set"))
    group.addoption("--evidence-dir", dest="harness_evidence_dir", metavar="DIR", default="reports",
                    help=_help("help.evidence_dir"))
    group.addoption("--lang", dest="harness_lang", choices=LANGS, default=None,
                    help=_help("help.lang_messages"))
    group.addoption("--offline", dest="harness_offline", action="store_true", default=False,
                    help=_help("help.offline"))
    group.addoption("--sign", dest="harness_sign", metavar="KEY", default=None,
                    help=_help("help.sign"))
    group.addoption("--live", dest="harness_live", metavar="ADDRESS", nargs="?", const="127.0.0.1", default=None,
                    help=_help("help.live"))
    group.addoption("--live-linger", dest="harness_live_linger", metavar="SECONDS", type=float, default=0.0,
                    help=_help("help.live_linger"))
    try:
        _pm, _pm_error = get_plugin_manager(), None
        _pm.hook.harness_addoption(group=group)
    except HarnessError as exc:
        _pm, _pm_error = None, exc


def _state(config: pytest.Config) -> HarnessState | None:
    return config.stash.get(STATE_KEY, None)


def _run_info(config: pytest.Config) -> tuple[RunInfo, bool]:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        shared = workerinput["harness_run"]
        return RunInfo(shared["run_id"], shared["started_at"], Path(shared["evidence_dir"]), salt=shared["salt"]), True
    return RunInfo(new_run_id(), utc_now(), Path(config.getoption("harness_evidence_dir")).resolve()), False


def _prepare(config: pytest.Config) -> tuple[Assembly, list[Scenario], Target]:
    if _pm_error is not None:
        raise _pm_error
    assembly = assemble(config.getoption("harness_scenario_dirs"), pm=_pm)
    selected = assembly.catalogue.select(config.getoption("harness_scenarios"))
    overrides = list(config.getoption("harness_target_overrides"))
    if config.getoption("harness_sign"):
        overrides.append(f"signature.key={config.getoption('harness_sign')}")
    target = resolve_target(assembly.pm, config.getoption("harness_target"), overrides)
    assembly.pm.hook.harness_configure(options=dict(vars(config.option)), target=target)
    return assembly, selected, target


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("harness_scenarios"):
        return
    lang = resolve_lang(config.getoption("harness_lang"))
    try:
        assembly, selected, target = _prepare(config)
    except HarnessError as exc:
        raise pytest.UsageError(exc.message(lang)) from None
    info, is_worker = _run_info(config)
    # one scrubber for everything this process lets out: artefacts, messages, bundle, terminal
    secrets.install(Scrubber(target.secret_values()))
    state = HarnessState(assembly, selected, target, lang, config.getoption("harness_offline"), info, is_worker)
    if not is_worker and target.section("signature").get("key"):
        try:
            state.signer = _signer(target)
        except HarnessError as exc:
            raise pytest.UsageError(exc.message(lang)) from None
    if not is_worker:
        _watch(config, state)  # first: a live view that cannot start stops the run before it leaves anything
        clean_debris(info.evidence_dir)  # what killed runs left; live runs hold their lock
        state.lock = RunLock(staging_dir(info.evidence_dir, info.run_id))
    config.stash[STATE_KEY] = state
    if getattr(config.option, "allure_report_dir", "unset") is None and not config.option.collectonly:
        # Allure results beside the bundle unless --alluredir says where (allure-pytest's
        # own configure, which runs after this one, reads the option)
        config.option.allure_report_dir = str(info.evidence_dir / f"{info.run_id}.allure")
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


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist: what went wrong in a worker outside the scenarios reaches the bundle."""
    state = _state(node.config)
    if state is not None:
        state.info.incidents.extend(Text.of(i) for i in getattr(node, "workeroutput", {}).get(INCIDENTS_OUTPUT, []))


def _watch(config: pytest.Config, state: HarnessState) -> None:
    """The controller follows the run's events: a progress line on long runs, and the live
    view when asked (a bad address is a usage error, before anything runs)."""
    import os

    from .events import EventHub, Poller, Progress

    if config.option.collectonly:
        return
    state.hub = EventHub(staging_dir(state.info.evidence_dir, state.info.run_id), len(state.selected))
    address = config.getoption("harness_live")
    if address is not None:
        from .liveview import LiveView, page, parse_address

        try:
            host, _port = parse_address(address)
        except ValueError:
            raise pytest.UsageError(M("live.bad_address", address=address).render(state.lang)) from None
        product = state.target.product
        html = page(state.lang, state.info.run_id, f"{product.get('name', '')} {product.get('version', '')}")
        try:
            state.view = LiveView(state.hub, address, lambda: html, lambda d: _image(state, d))
        except OSError as exc:
            raise pytest.UsageError(M("live.cannot_listen", address=address, error=str(exc)).render(state.lang)) from None
    progress = None
    if config.pluginmanager.has_plugin("terminal") and config.getoption("verbose") >= 0:  # the reporter itself registers later
        lang = state.lang

        def line(done: int, total: int, running: list) -> str:
            kinds = {"collect": M("progress.collect").render(lang), "check": M("progress.check").render(lang)}
            now = "; ".join(f"{sid} — {kinds.get(kind, kind)} {step} ({age:.0f} s)" for sid, kind, step, age in running)
            return M("progress.line", done=done, total=total, running=now).render(lang)

        try:
            after = float(os.environ.get("HARNESS_PROGRESS_AFTER") or 10)  # seconds a step runs before a progress line
            progress = Progress(state.hub, line, os.dup(1), after=after, every=after)  # fd taken while pytest's capture is suspended
        except OSError:
            progress = None
    if progress is None and state.view is None:  # nobody to tell: no thread
        state.hub = None
        return
    state.poller = Poller(state.hub, progress.tick if progress is not None else None)
    state.progress = progress


def _image(state: HarnessState, digest: str) -> bytes | None:
    """A screenshot for the live view: from the staging store while the run lasts, then from the bundle."""
    try:
        return state.info.store.get(digest)
    except (OSError, KeyError):
        pass
    if state.sealed is not None:  # the run's own bundle, just sealed: read, not verified again
        import zipfile

        try:
            with zipfile.ZipFile(state.sealed.path) as zf:
                return zf.read(f"artefacts/{digest}")
        except (OSError, KeyError, zipfile.BadZipFile):
            return None
    return None


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = _state(config)
    if state is None or state.view is None:
        return None
    import ipaddress

    lines = [M("live.started", url=state.view.url).render(state.lang)]
    try:
        loopback = ipaddress.ip_address(state.view.host).is_loopback
    except ValueError:
        loopback = state.view.host == "localhost"
    if not loopback:
        lines.append(M("live.not_loopback", host=state.view.host).render(state.lang))
    return lines


class ScenarioFile(pytest.Collector):
    def __init__(self, *, scenarios: list[Scenario], **kw: Any) -> None:
        super().__init__(**kw)
        self.scenarios = scenarios

    def collect(self) -> list[pytest.Item]:
        return [ScenarioItem.from_parent(self, name=s.id, scenario=s) for s in self.scenarios]


class ScenarioNotPassed(Exception):
    def __init__(self, result: ScenarioResult) -> None:
        super().__init__(result.verdict.value)
        self.result = result


class ScenarioFailed(ScenarioNotPassed, AssertionError):
    """A FAIL: a requirement not met (reporters such as Allure tell it from an ERROR, a
    proof that could not be made, by the AssertionError)."""


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Scenario, **kw: Any) -> None:
        super().__init__(**kw)
        self.scenario = scenario
        self.funcargs: dict[str, Any] = {}  # read by reporters written for test functions (allure-pytest)
        for tag in scenario.tags:
            self.add_marker(tag.replace("-", "_"))

    def runtest(self) -> None:
        state = self.config.stash[STATE_KEY]
        if state.live is None:
            state.live = LiveSession(
                state.assembly.pm, state.assembly.registry, state.target,
                Recorder(state.info.store, secrets.active()),
                lang=state.lang, offline=state.offline, salt=state.info.salt,
                events=EventLog(staging_dir(state.info.evidence_dir, state.info.run_id)),
            )
            state.live.before_altering = set(state.before_altering or ())
        result = state.live.run_scenario(self.scenario)
        self.user_properties.append((RESULT_PROPERTY, result.to_json()))
        if allure_results.active(self.config):
            try:
                allure_results.record(result, self.scenario, state.lang, state.info.store.get)
            except Exception as exc:  # a reporter's failure costs its report, never the verdict
                state.info.incidents.append(M("allure.failed", scenario=self.scenario.id, error=f"{type(exc).__name__}: {exc}"))
        if result.verdict is Verdict.PASS:
            return
        if result.verdict is Verdict.FAIL:
            raise ScenarioFailed(result)
        if result.verdict is Verdict.ERROR:
            raise ScenarioNotPassed(result)
        pytest.skip(f"{result.verdict.value}: " + "; ".join(m.render(state.lang) for _, m in result.reasons()))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioNotPassed):
            lang = self.config.stash[STATE_KEY].lang
            r = excinfo.value.result
            lines = [f"{r.verdict.value}: {self.scenario.title[lang]} ({', '.join(r.requirements)})"]
            for c in r.collect:
                if c.message is not None:
                    lines.append(f"  [collect {c.name}] {c.message.render(lang)}")
                lines.extend(f"  [collect {c.name}] {item}: {reason.render(lang)}" for item, reason in c.refused)
            for c in r.checks:
                for reason in c.reasons:
                    lines.append(f"  [{c.name}] {c.verdict.value}: {reason.render(lang)}")
            for f in r.findings:
                lines.append(f"  [{f.rule}] {f.severity.value} {f.requirement} @ {f.location}: {f.text(lang)}")
            return "\n".join(lines)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[str, int | None, str]:
        return self.scenario.shown_path, None, f"scenario {self.scenario.id}"


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
        shown = scenarios[0].shown_path
        node = ScenarioFile.from_parent(session, name=shown, nodeid=shown, scenarios=scenarios)
        # Report the collection like pytest's own collectors, so counts and -k work.
        rep = session.ihook.pytest_make_collect_report(collector=node)
        session.ihook.pytest_collectreport(report=rep)
        collected.extend(i for i in rep.result if isinstance(i, pytest.Item))
    # a scenario whose collector alters the software (registers patients...) runs after every
    # other (harness.running.steps.collector); the order is otherwise the files'
    registry = state.assembly.registry
    collected.sort(key=lambda i: isinstance(i, ScenarioItem) and alters(i.scenario, registry))
    items[:] = collected


def pytest_collection_finish(session: pytest.Session) -> None:
    """The scenarios a collector that alters the software waits for (those this run keeps,
    whatever selected them), in this process and, under pytest-xdist, in each worker alike."""
    state = _state(session.config)
    if state is None:
        return
    registry = state.assembly.registry
    state.before_altering = {i.scenario.id for i in session.items if isinstance(i, ScenarioItem) and not alters(i.scenario, registry)}


def _result_of(report: pytest.TestReport) -> dict | None:
    for name, value in report.user_properties:
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

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            result = _result_of(report)
            if result is not None:
                self.state.info.results[result["scenario"]] = ScenarioResult.from_json(result)
        elif report.when == "teardown":
            # the result travels from workers in the call report; it is no property of the test
            # for `--junitxml` (whose xunit2 schema allows none on a test case)
            report.user_properties = [(k, v) for k, v in report.user_properties if k != RESULT_PROPERTY]


def _junit_properties(config: pytest.Config, sealed: Sealed) -> None:
    """With ``--junitxml``: each requirement's verdict and each scenario's verdict and
    requirements, as properties of the test suite (where the xunit2 schema allows them), and
    the bundle they come from."""
    from _pytest.junitxml import xml_key

    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    xml.add_global_property("harness.bundle", str(sealed.path))
    for req, record in sorted(sealed.manifest.requirements.items()):
        xml.add_global_property(f"requirement.{req}", record["verdict"])
    for r in sealed.manifest.results:
        xml.add_global_property(f"scenario.{r.scenario}", f"{r.verdict.value} {' '.join(r.requirements)}")


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    state = _state(session.config)
    if state is not None and not state.is_worker:
        session.config.pluginmanager.register(HarnessResults(state), "harness-results")


def _signer(target: Target):
    from ..evidence.signature import load_signer

    conf = target.section("signature")
    ref = conf.get("passphrase")
    return load_signer(conf["key"], conf.get("certificate"), target.resolve_secret(ref) if ref else None)


def _signed(state: HarnessState, body: bytes) -> bytes:
    """The manifest's signature, timestamped when the target names an authority (a failed
    timestamp leaves the signature without one, and says so: the bundle is never lost)."""
    from ..evidence.signature import sign, timestamp

    p7s = sign(body, state.signer)
    url = state.target.section("signature").get("timestamp_url")
    if url:
        deadline = float(state.target.section("network").get("deadline") or 30)
        p7s, state.sign_warning = timestamp(p7s, url, deadline=deadline, offline=state.offline)
    return p7s


def _seal(state: HarnessState, config: pytest.Config) -> Sealed:
    signer = state.signer
    return seal(
        state.info,
        pm=state.assembly.pm,
        catalogue=state.assembly.catalogue,
        selected=state.selected,
        core_version=core_version(),
        plugins=plugin_versions(state.assembly.pm),
        blocked=blocked_plugins(),
        target=state.target.sanitized(),
        target_file=state.target.path.name if state.target.path else "-",
        options={
            "lang": state.lang,
            "offline": state.offline,
            "scenarios": list(config.getoption("harness_scenarios")),
            "workers": getattr(config.option, "numprocesses", None) or 0,
        },
        sign=(lambda body: _signed(state, body)) if signer is not None else None,
        lang=state.lang,
        rules=rules_fingerprints(state.assembly.pm),
    )


@pytest.hookimpl(tryfirst=True)  # before --junitxml writes its file: the verdicts go in it
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _state(session.config)
    if state is None:
        return
    incidents = state.live.close() if state.live is not None else []
    if state.is_worker:
        session.config.workeroutput[INCIDENTS_OUTPUT] = [i.texts() for i in incidents]  # type: ignore[attr-defined]
        return
    state.info.incidents.extend(incidents)
    try:
        if session.config.option.collectonly:
            shutil.rmtree(staging_dir(state.info.evidence_dir, state.info.run_id), ignore_errors=True)
        else:
            if state.hub is not None:
                state.hub.poll()  # the last events, before sealing removes the staging folder
            state.sealed = _seal(state, session.config)
            _junit_properties(session.config, state.sealed)
            _write_reports(state)
            if state.hub is not None:
                state.hub.finish({"bundle": str(state.sealed.path),
                                  "requirements": {k: v["verdict"] for k, v in sorted(state.sealed.manifest.requirements.items())}})
    except Exception as exc:  # the run's result must still be visible; the exit code says it failed
        state.bundle_error = f"{type(exc).__name__}: {exc}"
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
    finally:
        if state.lock is not None:
            state.lock.release()


def _write_reports(state: HarnessState) -> None:
    """The HTML report and the coverage matrix beside the bundle, read back from it; failing
    to write them leaves the bundle as sealed, and says so."""
    from ..reporting.report import write_beside

    try:
        state.reports = write_beside(state.sealed.path, state.lang, sealed_here=True)
    except Exception as exc:
        state.report_error = f"{type(exc).__name__}: {exc}"


def pytest_unconfigure(config: pytest.Config) -> None:
    """The live view lingers if asked, then stops with the event poller: nothing is served
    after the run."""
    state = _state(config)
    if state is None:
        return
    secrets.install(Scrubber())  # the next run in this process brings its own
    if state.view is not None:
        linger = max(0.0, float(config.getoption("harness_live_linger") or 0))
        if linger and state.hub is not None and state.hub.finished is not None:
            import time

            tr = config.pluginmanager.get_plugin("terminalreporter")
            if tr is not None:
                tr.write_line(M("live.lingering", seconds=f"{linger:g}", url=state.view.url).render(state.lang))
            time.sleep(linger)
        state.view.stop()
    if state.poller is not None:
        state.poller.stop()
    if state.progress is not None:
        state.progress.close()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = _state(config)
    if state is None or state.is_worker or (state.sealed is None and state.bundle_error is None):
        return
    terminalreporter.section("harness")
    if state.sealed is not None:
        s = state.sealed
        text = render_summary(s.manifest, s.findings, state.lang, sections=s.sections[state.lang], bundle_path=str(s.path))
        for line in text.rstrip("\n").splitlines():
            terminalreporter.write_line(line)
    else:
        terminalreporter.write_line(M("summary.bundle_failed", error=state.bundle_error).render(state.lang), red=True)
    if state.sign_warning is not None:
        terminalreporter.write_line(state.sign_warning.render(state.lang), yellow=True)
    for path in state.reports or []:
        terminalreporter.write_line(M("summary.report_written", path=str(path)).render(state.lang))
    allure_dir = getattr(config.option, "allure_report_dir", None)
    if allure_dir and allure_results.active(config):
        terminalreporter.write_line(M("summary.allure_written", path=str(allure_dir)).render(state.lang))
    if state.report_error is not None:
        terminalreporter.write_line(M("summary.report_failed", error=state.report_error).render(state.lang), red=True)
