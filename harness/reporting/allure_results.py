"""Allure results of a scenario run, through allure-pytest (``--alluredir``; by default
``<evidence-dir>/<run-id>.allure/``).

allure-pytest makes each scenario a test; this module fills it in once the scenario has
run: its title in the run's language, its requirement ids, criticality and tags as labels,
each collect and check step as an Allure step with the step's verdict, the findings as
sub-steps, and the artefacts the checks read as attachments (screenshots first; bounded in
number and size, the rest named by hash in a text attachment: the bundle holds them all).
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Callable

import pytest

from ..messages import catalogue
from ..results import ScenarioResult, StepStatus
from ..running.scenarios import Scenario
from ..verdicts import Verdict

M = catalogue(__name__)

MAX_ATTACHMENTS = 40  # per scenario
MAX_ATTACHED_BYTES = 8 * 1024 * 1024  # per scenario
SEVERITY = {"critical": "critical", "major": "normal", "minor": "minor"}
_IMAGES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml", "image/webp")


def active(config: pytest.Config) -> bool:
    return config.pluginmanager.has_plugin("allure_listener")


def _exception(verdict: Verdict | str, message: str) -> BaseException | None:
    """The exception allure-commons reads a step's status from."""
    verdict = Verdict(verdict)
    if verdict is Verdict.PASS:
        return None
    if verdict is Verdict.FAIL:
        return AssertionError(message)
    if verdict is Verdict.ERROR:
        return RuntimeError(message)
    return pytest.skip.Exception(message)


class _Step:
    def __init__(self, title: str, params: dict[str, str] | None = None) -> None:
        from allure_commons import plugin_manager

        self.hook = plugin_manager.hook
        self.uuid = uuid.uuid4().hex
        self.hook.start_step(uuid=self.uuid, title=title, params=params or {})

    def stop(self, verdict: Verdict | str = Verdict.PASS, message: str = "") -> None:
        exc = _exception(verdict, message)
        self.hook.stop_step(uuid=self.uuid, exc_type=type(exc) if exc else None, exc_val=exc, exc_tb=None)


# what Allure's page may show as it is: images it draws and text it prints. Anything else the
# software sent (an HTML page with its scripts, SVG, JavaScript) would run in the reader's
# browser inside Allure's report: it is attached as text (its source shown), or as bytes.
_SHOWN_AS_IS = {"image/png", "image/jpeg", "image/gif", "image/webp", "application/json", "text/plain", "text/csv",
                "text/tab-separated-values", "application/xml", "text/xml"}


def _attachment_type(media_type: str) -> tuple[Any, str | None]:
    from allure_commons.types import AttachmentType

    base = (media_type or "").split(";")[0].strip().lower()
    if base not in _SHOWN_AS_IS:
        textual = base.startswith("text/") or base.endswith(("+xml", "+json", "/javascript", "/ecmascript", "/xhtml+xml"))
        base = "text/plain" if textual else "application/octet-stream"
    for t in AttachmentType:
        if t.mime_type == base:
            return t, None
    return base, "bin"


class _Attacher:
    def __init__(self, read: Callable[[str], bytes], artefacts: dict) -> None:
        from allure_commons import plugin_manager

        self.hook = plugin_manager.hook
        self.read = read
        self.artefacts = artefacts
        self.count = 0
        self.bytes = 0
        self.left_out: list[str] = []
        self.done: set[str] = set()

    def attach(self, name: str, digest: str) -> None:
        if digest in self.done:
            return
        self.done.add(digest)
        meta = self.artefacts.get(digest)
        size = meta.size if meta is not None else 0
        if meta is None or self.count >= MAX_ATTACHMENTS or self.bytes + size > MAX_ATTACHED_BYTES:
            self.left_out.append(f"{name} sha256:{digest}")
            return
        try:
            body = self.read(digest)
        except (KeyError, OSError):
            self.left_out.append(f"{name} sha256:{digest}")
            return
        kind, extension = _attachment_type(meta.media_type)
        self.hook.attach_data(body=body, name=f"{name} ({meta.label})", attachment_type=kind, extension=extension)
        self.count += 1
        self.bytes += size


def record(result: ScenarioResult, scenario: Scenario, lang: str, read: Callable[[str], bytes]) -> None:
    """Fill in the running Allure test of ``scenario`` from its ``result``."""
    import allure

    allure.dynamic.title(scenario.title[lang])
    allure.dynamic.description(M("allure.description", requirements=", ".join(scenario.requirements), proof=scenario.proof,
                                 verdict=result.verdict.value).render(lang))
    for req in scenario.requirements:
        allure.dynamic.label("requirement", req)
        allure.dynamic.story(req)
    allure.dynamic.label("criticality", scenario.criticality)
    allure.dynamic.severity(SEVERITY.get(scenario.criticality, "normal"))
    allure.dynamic.label("verdict", result.verdict.value)
    if scenario.tags:
        allure.dynamic.feature(scenario.tags[0])
    for profile in scenario.profiles:
        allure.dynamic.label("profile", profile)
    allure.dynamic.parent_suite(M("allure.suite").render(lang))
    allure.dynamic.suite(scenario.tags[0] if scenario.tags else scenario.shown_path)

    attacher = _Attacher(read, result.artefacts)
    images = {d for d, meta in result.artefacts.items() if meta.media_type in _IMAGES}
    for c in result.collect:
        step = _Step(M("allure.collect", name=c.name).render(lang))
        # screenshots first, then the rest of what the step produced
        for name, digest in sorted(c.outputs.items(), key=lambda kv: (kv[1] not in images, kv[0])):
            attacher.attach(name, digest)
        reasons = [c.message.render(lang)] if c.message is not None else []
        reasons += [f"{item}: {why.render(lang)}" for item, why in c.refused]
        if c.status is StepStatus.ERROR or c.refused:
            step.stop(Verdict.ERROR, "; ".join(reasons))
        elif c.status is StepStatus.NOT_APPLICABLE:
            step.stop(Verdict.NOT_RUN, "; ".join(reasons))
        else:
            step.stop(Verdict.PASS)
    for check in result.checks:
        step = _Step(M("allure.check", name=check.name, assertions=check.assertions).render(lang))
        for f in (f for f in result.findings if f.check == check.name):
            sub = _Step(f"[{f.rule}] {f.severity.value} {f.requirement} @ {f.location}")
            if f.artefact:
                attacher.attach(f.rule, f.artefact)
            sub.stop(Verdict.FAIL if f.severity.fails else Verdict.PASS, f.text(lang))
        step.stop(check.verdict, "; ".join(r.render(lang) for r in check.reasons))
    from allure_commons import plugin_manager

    loose = [f for f in result.findings if f.check not in {c.name for c in result.checks}]
    if loose:
        step = _Step(M("allure.findings").render(lang))
        for f in loose:
            sub = _Step(f"[{f.rule}] {f.severity.value} {f.requirement} @ {f.location}")
            sub.stop(Verdict.FAIL if f.severity.fails else Verdict.PASS, f.text(lang))
        step.stop(Verdict.PASS)
    findings = [f.to_json() for f in result.findings]
    if findings:
        plugin_manager.hook.attach_data(body=json.dumps(findings, ensure_ascii=False, indent=2), name="findings.json",
                                        attachment_type=_attachment_type("application/json")[0], extension=None)
    if attacher.left_out:
        plugin_manager.hook.attach_data(body=M("allure.left_out", count=len(attacher.left_out)).render(lang) + "\n" + "\n".join(attacher.left_out),
                                        name="bundle.txt", attachment_type=_attachment_type("text/plain")[0], extension=None)
