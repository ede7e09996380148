"""One process's live run: services started on demand, collect steps, then the checks."""
from __future__ import annotations

from typing import Callable, Mapping

import pluggy

from ..running.checking import evaluate
from ..running.context import Artefact, CheckContext, CollectContext, Service, ServiceContext, input_group, resolve_service_url
from ..errors import HarnessError, NotApplicable
from .events import EventLog
from ..evidence.recorder import Recorder, RecordingHttp
from ..messages import Localized, Message, Text, catalogue
from ..safety.http import is_loopback
from ..results import ArtefactMeta, CollectStep, ScenarioResult, StepStatus
from ..running.scenarios import Scenario
from ..running.steps import Registry
from ..running.target import Target

M = catalogue(__name__)
DEADLINE = 30.0  # seconds an exchange with the software may last in all
READ_TIMEOUT = 10.0  # seconds without a byte
OTHERS_WAIT = 1800.0  # seconds a collector that alters the software waits, at most, for the other scenarios to end


class _Collected:
    """What one collector gave for given earlier inputs (kept: most collectors read none)."""

    def __init__(self, outputs: dict[str, Artefact], produced: dict[str, ArtefactMeta], status: StepStatus, message: Localized | None,
                 refused: list[tuple[str, Localized]]) -> None:
        self.outputs = outputs
        self.produced = produced
        self.status = status
        self.message = message
        self.refused = refused


class LiveSession:
    """Services, recorder and collector cache of one process (each pytest-xdist worker has one)."""

    def __init__(self, pm: pluggy.PluginManager, registry: Registry, target: Target, recorder: Recorder, *, lang: str, offline: bool,
                 salt: str = "", events: EventLog | None = None) -> None:
        self.pm = pm
        self.events = events
        if events is not None:
            recorder.listener = lambda a: events.emit("artefact", scenario=self._current, label=a.label, media_type=a.media_type,
                                                      sha256=a.sha256, size=a.size)
        self._current: str | None = None  # the scenario running in this process (its artefacts' events name it)
        self.salt = salt
        self.registry = registry
        self.target = target
        self.recorder = recorder
        self.lang = lang
        self.offline = offline
        network = target.section("network")
        self.http = RecordingHttp(recorder, offline=offline, total=float(network.get("deadline", DEADLINE)),
                                  read=float(network.get("read_timeout", READ_TIMEOUT)))
        self.services: dict[str, Service] = {}
        self._collected: dict[tuple, _Collected] = {}
        self._terminology = None
        # the run's scenarios that alter nothing (harness.running.steps.collector's ``alters``):
        # a collector that alters the software waits until every one of them ended, in any process
        self.before_altering: set[str] = set()
        # checks see the target as the bundle records it, live and in replay alike
        self.recorded_target = target.recorded()

    def service_url(self, name: str) -> str:
        if name not in self.services:
            options = self.target.services.get(name)
            if options is None:
                raise HarnessError(M("service.undeclared", name=name))
            svc = self.pm.hook.harness_start_service(name=name, options=options, ctx=ServiceContext(self.target, self.recorder.record))
            if svc is None:
                raise HarnessError(M("service.unprovided", name=name))
            self.services[name] = svc
        return self.services[name].base_url

    def service_info(self, name: str) -> dict:
        """What the service ``name`` says of itself (started if it was not)."""
        self.service_url(name)
        return dict(self.services[name].info)

    def service_received(self, name: str) -> list[dict] | None:
        """What the service ``name`` received so far, when it says (started if it was not)."""
        self.service_url(name)
        received = self.services[name].received
        return list(received()) if received is not None else None

    def terminology(self):
        """The run's terminology set-up, built on first use (one per process)."""
        if self._terminology is None:
            from ..terminology import build

            self._terminology = build(self.target.section("terminology"), offline=self.offline,
                                      resolve_url=lambda url: resolve_service_url(url, self.service_url),
                                      secret=self.target.secret, is_loopback=is_loopback)
        return self._terminology

    def _check_context(self, inputs: Mapping[str, Artefact]) -> CheckContext:
        return CheckContext(inputs, self.recorder.store.get, self.recorded_target, "", self.salt, self.registry.extractors,
                            opener=self.recorder.store.open)

    def _run_collector(self, name: str, ctx: CollectContext) -> tuple[dict[str, Artefact], StepStatus, Localized | None]:
        fn = self.registry.collectors.get(name)
        if fn is None:
            return {}, StepStatus.ERROR, M("step.unknown", kind="collect", name=name)
        try:
            outputs = dict(fn(ctx))
        except NotApplicable as exc:
            return {}, StepStatus.NOT_APPLICABLE, exc.detail
        except HarnessError as exc:
            return {}, StepStatus.ERROR, M("collect.failed", name=name, error=exc.detail)
        except Exception as exc:  # a collector bug is an ERROR verdict, not a crash
            return {}, StepStatus.ERROR, M("collect.failed", name=name, error=f"{type(exc).__name__}: {exc}")
        undeclared = sorted({input_group(k) for k in outputs} - set(fn.produces))
        if undeclared:
            detail = M("collect.undeclared", names=", ".join(undeclared), declared=", ".join(fn.produces) or "-")
            return {}, StepStatus.ERROR, M("collect.failed", name=name, error=detail)
        return outputs, StepStatus.OK, None

    def _collect(self, name: str, inputs: Mapping[str, Artefact]) -> _Collected:
        """Computed once per process for the same earlier inputs; once per run for a
        collector declared ``once_per_run`` (see :func:`_shared`); a collector that alters the
        software only once every scenario that does not has ended (:meth:`_wait_others`)."""
        key = (name, tuple(sorted((k, a.sha256) for k, a in inputs.items())))
        fn = self.registry.collectors.get(name)
        compute = (lambda: self._wait_others(name) or self._collect_here(key, name, inputs)) if getattr(fn, "alters", False) else \
            (lambda: self._collect_here(key, name, inputs))
        if key not in self._collected and getattr(fn, "once_per_run", False):
            self._collected[key] = self._shared(key, compute)
        return self._collected[key] if key in self._collected else compute()

    def _done_folder(self):
        return self.recorder.store.root.parent / "once" / "ended"

    def _mark_ended(self, scenario_id: str) -> None:
        import hashlib

        folder = self._done_folder()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / hashlib.sha256(scenario_id.encode()).hexdigest()[:32]).touch()

    def _wait_others(self, name: str) -> _Collected | None:
        """None once every scenario of :attr:`before_altering` has ended, in whichever process
        ran it (a serial run: at once, they ran first); after :data:`OTHERS_WAIT` seconds, the
        collector's ERROR, said."""
        import hashlib
        import time

        folder, deadline = self._done_folder(), time.monotonic() + OTHERS_WAIT
        waiting = {hashlib.sha256(s.encode()).hexdigest()[:32]: s for s in self.before_altering}
        while True:
            left = sorted(s for stem, s in waiting.items() if not (folder / stem).exists())
            if not left:
                return None
            if time.monotonic() > deadline:
                return _Collected({}, {}, StepStatus.ERROR, M("collect.failed", name=name, error=M("collect.others_running", seconds=int(OTHERS_WAIT),
                                                                                                        scenarios=", ".join(left[:10]))), [])
            time.sleep(0.1)

    def _shared(self, key: tuple, compute: Callable[[], _Collected]) -> _Collected:
        """One process of the run collects (under a lock in the staging store shared by the
        pytest-xdist workers), the others read what it recorded: the software is called,
        and a simulator runs, once for the whole run, and every scenario is judged on the
        same exchanges."""
        import fcntl
        import hashlib
        import json

        folder = self.recorder.store.root.parent / "once"
        folder.mkdir(parents=True, exist_ok=True)
        stem = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:32]
        with open(folder / f"{stem}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # held while the first process collects
            done = folder / f"{stem}.json"
            if done.exists():
                got = json.loads(done.read_text(encoding="utf-8"))
                return _Collected(
                    {k: Artefact(**a) for k, a in got["outputs"].items()},
                    {d: ArtefactMeta.from_json(m) for d, m in got["produced"].items()},
                    StepStatus(got["status"]), Text.of(got["message"]) if got["message"] else None,
                    [(item, Text.of(reason)) for item, reason in got["refused"]])
            collected = compute()
            record = {"outputs": {k: {"sha256": a.sha256, "size": a.size, "media_type": a.media_type, "label": a.label} for k, a in collected.outputs.items()},
                      "produced": {d: m.to_json() for d, m in collected.produced.items()}, "status": collected.status.value,
                      "message": collected.message.texts() if collected.message else None,
                      "refused": [[item, reason.texts()] for item, reason in collected.refused]}
            done.write_text(json.dumps(record), encoding="utf-8")
            return collected

    def _collect_here(self, key: tuple, name: str, inputs: Mapping[str, Artefact]) -> _Collected:
        if key not in self._collected:
            return self._collected.setdefault(key, self._computed(name, inputs))
        return self._collected[key]

    def _computed(self, name: str, inputs: Mapping[str, Artefact]) -> _Collected:
        before = set(self.recorder.recorded)
        ctx = CollectContext(target=self.target, record=self.recorder.record, http=self.http, service_url=self.service_url, lang=self.lang,
                             service_info=self.service_info, service_received=self.service_received,
                             inputs=inputs, check_context=self._check_context, terminology=self.terminology)
        outputs, status, message = self._run_collector(name, ctx)
        produced = {d: a.meta() for d, a in self.recorder.recorded.items() if d not in before}
        return _Collected(outputs, produced, status, message, ctx.refused)

    def _emit(self, kind: str, **fields) -> None:
        if self.events is not None:
            self.events.emit(kind, **fields)

    def run_scenario(self, scenario: Scenario) -> ScenarioResult:
        self._current = scenario.id
        self._emit("scenario.start", scenario=scenario.id, title=dict(scenario.title), requirements=list(scenario.requirements))
        try:
            result = self._run_scenario(scenario)
        finally:
            self._current = None
            if scenario.id in self.before_altering:
                self._mark_ended(scenario.id)
        for f in result.findings:
            self._emit("finding", scenario=scenario.id, rule=f.rule, severity=f.severity.value, requirement=f.requirement,
                       location=f.location, message=f.message.texts(), artefact=f.artefact)
        self._emit("scenario.end", scenario=scenario.id, verdict=result.verdict.value,
                   checks=[{"name": c.name, "verdict": c.verdict.value} for c in result.checks])
        return result

    def _run_scenario(self, scenario: Scenario) -> ScenarioResult:
        steps: list[CollectStep] = []
        inputs: dict[str, Artefact] = {}
        artefacts: dict[str, ArtefactMeta] = {}
        for name in scenario.collect:
            self._emit("step.start", scenario=scenario.id, step_kind="collect", name=name)
            got = self._collect(name, inputs)
            artefacts.update(got.produced)
            steps.append(CollectStep(name, got.status, got.message, {k: a.sha256 for k, a in got.outputs.items()}, list(got.refused)))
            for k, a in got.outputs.items():
                inputs[k] = a
                artefacts[a.sha256] = a.meta()
        self._emit("step.start", scenario=scenario.id, step_kind="check", name=", ".join(scenario.checks))
        verdict, checks, findings = evaluate(scenario, inputs, self.recorder.store.get, self.recorded_target, self.registry, steps, self.salt,
                                            self.recorder.store.open)
        return ScenarioResult(scenario.id, list(scenario.requirements), verdict, steps, {k: a.sha256 for k, a in inputs.items()},
                              checks, findings, artefacts)

    def close(self) -> list[Message]:
        """Stop every started service; what went wrong stopping them, said (never swallowed)."""
        incidents = []
        for name, svc in self.services.items():
            try:
                svc.stop()
            except Exception as exc:
                incidents.append(M("service.stop_failed", name=name, error=f"{type(exc).__name__}: {exc}"))
        self.services.clear()
        return incidents
