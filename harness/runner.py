"""Running scenarios: live collection, then checks that are pure functions of the record.

:func:`evaluate` is the single place where checks run and verdicts are derived; the live
run and ``harness verify --replay`` both call it, which is what makes replay faithful.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import pluggy

from .context import Artefact, Check, CheckContext, CodedValueExtractor, resolve_service_url, CollectContext, Collector, MissingInput, Service, ServiceContext
from .errors import HarnessError, NotApplicable
from .evidence import Recorder, RecordingHttp
from .i18n import LANGS, both, t
from .scenarios import Scenario
from .target import Target
from .verdicts import Evaluation, Verdict, combine


@dataclass
class Registry:
    collectors: dict[str, Collector]
    checks: dict[str, Check]
    extractors: dict[str, CodedValueExtractor] = field(default_factory=dict)


def _merge(pm: pluggy.PluginManager, results: list[tuple[Any, Mapping]], kind: str) -> dict:
    merged: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for plugin_name, mapping in results:
        for name, fn in mapping.items():
            if name in merged:
                raise HarnessError(
                    f"Étape {kind} {name!r} fournie par deux greffons : {owner[name]} et {plugin_name}",
                    f"{kind} step {name!r} provided by two plugins: {owner[name]} and {plugin_name}",
                )
            merged[name], owner[name] = fn, plugin_name
    return merged


def build_registry(pm: pluggy.PluginManager) -> Registry:
    def named(hook_name: str) -> list[tuple[str, Mapping]]:
        out = []
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            result = impl.function()
            if result:
                out.append((impl.plugin_name, result))
        return out

    return Registry(
        collectors=_merge(pm, named("harness_collectors"), "collect"),
        checks=_merge(pm, named("harness_checks"), "check"),
        extractors=_merge(pm, named("harness_coded_values"), "coded-values"),
    )


def evaluate(
    scenario: Mapping[str, Any],
    inputs: Mapping[str, Artefact],
    load: Callable[[str], bytes],
    target: Mapping[str, Any],
    checks: Mapping[str, Check],
    collect_steps: list[dict],
    salt: str = "",
    extractors: Mapping[str, CodedValueExtractor] | None = None,
) -> tuple[str, list[dict], list[dict]]:
    """Run the scenario's checks on recorded inputs: (verdict, check steps, findings).

    ``salt`` is the run's masking salt (:meth:`CheckContext.mask`), recorded in the
    manifest so that replay masks the same values the same way.
    """
    steps: list[dict] = []
    findings: list[dict] = []
    not_applicable = [c["status"] == "not-applicable" for c in collect_steps]
    if scenario.get("collect_mode", "all") == "any" and collect_steps:
        skip = all(not_applicable)  # runs on whatever the configured collectors gathered
    else:
        skip = any(not_applicable)
    if skip:
        return Verdict.NOT_RUN.value, steps, findings  # the target does not configure this
    verdicts = [Verdict.ERROR for c in collect_steps if c["status"] not in ("ok", "not-applicable")]
    for name in scenario["checks"]:
        ev = Evaluation(requirement=scenario["requirements"][0])
        fn = checks.get(name)
        if fn is None:
            ev.error(**both("unknown_step", kind="check", name=name))
        else:
            ctx = CheckContext(inputs, load, target, scenario["id"], salt, extractors)
            try:
                fn(ctx, ev)
            except MissingInput as exc:
                ev.error(**exc.messages)
            except HarnessError as exc:
                ev.error(**exc.messages)
            except Exception as exc:  # a bug in a check must not crash the run: ERROR
                ev.error(**both("check_crashed", name=name, error=f"{type(exc).__name__}: {exc}"))
        verdict = ev.verdict
        reasons = ev.errors + ev.inconclusive_reasons + ev.manual
        if verdict is Verdict.INCONCLUSIVE and not reasons:
            reasons = [both("nothing_evaluated")]
        step = {
            "name": name,
            "verdict": verdict.value,
            "assertions": ev.assertions,
            "reasons": reasons,
            "findings": len(ev.findings),
        }
        if ev.sensitive:
            step["sensitive"] = sorted(ev.sensitive)
        steps.append(step)
        findings.extend(dict(f.to_dict(), check=name) for f in ev.findings)
        verdicts.append(verdict)
    return combine(verdicts).value, steps, findings


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LiveSession:
    """One process's live run: services, recorder, collector cache."""

    def __init__(self, pm: pluggy.PluginManager, registry: Registry, target: Target, recorder: Recorder, *, lang: str, offline: bool, salt: str = "") -> None:
        self.pm = pm
        self.salt = salt
        self.registry = registry
        self.target = target
        self.recorder = recorder
        self.lang = lang
        self.offline = offline
        self.http = RecordingHttp(recorder)
        self.services: dict[str, Service] = {}
        self._collected: dict[tuple, tuple[dict | None, dict, dict | None]] = {}
        self._terminology = None
        self._sanitized = target.sanitized()

    def service_url(self, name: str) -> str:
        if name not in self.services:
            options = self.target.services.get(name)
            if options is None:
                raise HarnessError(f"Service non déclaré dans la cible : {name}", f"Service not declared in the target: {name}")
            svc = self.pm.hook.harness_start_service(name=name, options=options, ctx=ServiceContext(self.target, self.recorder.record))
            if svc is None:
                raise HarnessError(f"Aucun greffon ne fournit le service {name}", f"No plugin provides service {name}")
            self.services[name] = svc
        return self.services[name].base_url

    def terminology(self):
        """The run's terminology set-up, built on first use (one per process)."""
        if self._terminology is None:
            from .terminology import build

            self._terminology = build(self.target.data.get("terminology", {}), offline=self.offline,
                                      resolve_url=self._resolve_url, secret=self.target.secret, is_loopback=is_loopback)
        return self._terminology

    def _resolve_url(self, url: str) -> str:
        return resolve_service_url(url, self.service_url)

    def _check_context(self, inputs: Mapping[str, Artefact]) -> CheckContext:
        return CheckContext(inputs, self.recorder.store.get, self._sanitized, "", self.salt, self.registry.extractors)

    def _collect(self, name: str, inputs: Mapping[str, Artefact]) -> tuple[dict | None, dict, dict | None]:
        """(outputs, artefacts recorded meanwhile, error message) — computed once per
        process for the same earlier inputs (most collectors read none)."""
        key = (name, tuple(sorted((k, a.sha256) for k, a in inputs.items())))
        if key not in self._collected:
            fn = self.registry.collectors.get(name)
            before = set(self.recorder.recorded)
            outputs, error = None, None
            if fn is None:
                error = both("unknown_step", kind="collect", name=name)
            else:
                ctx = CollectContext(target=self.target, record=self.recorder.record, http=self.http, service_url=self.service_url, lang=self.lang,
                                     inputs=inputs, check_context=self._check_context, terminology=self.terminology)
                if self.offline:
                    ctx.http = _OfflineGuard(self.http)
                try:
                    outputs = dict(fn(ctx))
                except NotApplicable as exc:
                    error = {"status": "not-applicable", **exc.messages}
                except HarnessError as exc:
                    error = {lang: t("collect_failed", lang, name=name, error=exc.message(lang)) for lang in LANGS}
                except Exception as exc:  # a collector bug is an ERROR verdict, not a crash
                    error = both("collect_failed", name=name, error=f"{type(exc).__name__}: {exc}")
            produced = {d: a.meta() for d, a in self.recorder.recorded.items() if d not in before}
            self._collected[key] = (outputs, produced, error)
        return self._collected[key]

    def run_scenario(self, scenario: Scenario) -> dict[str, Any]:
        collect_steps: list[dict] = []
        inputs: dict[str, Artefact] = {}
        artefacts: dict[str, dict] = {}
        for name in scenario.collect:
            outputs, produced, error = self._collect(name, inputs)
            artefacts.update(produced)
            step: dict[str, Any] = {"name": name, "status": "ok"}
            if error is not None:
                step["status"] = error.get("status", "error")
                step["message"] = {lang: error[lang] for lang in LANGS}
            if outputs:
                step["outputs"] = {k: a.sha256 for k, a in sorted(outputs.items())}
                for k, a in outputs.items():
                    inputs[k] = a
                    artefacts[a.sha256] = a.meta()
            collect_steps.append(step)
        sdict = scenario.to_dict()
        verdict, checks, findings = evaluate(sdict, inputs, self.recorder.store.get, self._sanitized, self.registry.checks, collect_steps, self.salt,
                                             self.registry.extractors)
        return {
            "scenario": scenario.id,
            "requirements": list(scenario.requirements),
            "verdict": verdict,
            "collect": collect_steps,
            "inputs": {k: a.sha256 for k, a in sorted(inputs.items())},
            "checks": checks,
            "findings": findings,
            "artefacts": artefacts,
        }

    def close(self) -> None:
        for svc in self.services.values():
            try:
                svc.stop()
            except Exception:
                pass
        self.services.clear()


class _OfflineGuard:
    """``--offline``: the recording client refuses anything but loopback."""

    def __init__(self, http: RecordingHttp) -> None:
        self._http = http

    def _allowed(self, url: str) -> None:
        if not is_loopback(url):
            raise HarnessError(
                f"Mode hors ligne : accès réseau refusé vers {url}",
                f"Offline mode: network access refused to {url}",
            )

    def get(self, url: str, **kw: Any):
        self._allowed(url)
        return self._http.get(url, **kw)

    def post(self, url: str, **kw: Any):
        self._allowed(url)
        return self._http.post(url, **kw)
