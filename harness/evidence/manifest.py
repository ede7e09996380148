"""The manifest of an evidence bundle: what ran, with what, and what it concluded.

Format ``harness-bundle/3`` (this version) adds to ``/2``, optionally: the official
identifiers of a requirement (``official_ids``), the requirements of the selected tags that no
scenario proves (``coverage``), the fingerprints of the rules' code (``rules``), and the
reports sealed under ``reports/``; an earlier harness
refuses it by its format, plainly, rather than by a key it does not know. ``/2`` differs from
``harness-bundle/1`` in two points only: the exchanges of a document index are a collection of
their own (``doc-live.exchange/001`` instead of ``doc-live/001.exchange``), and scenario files
are named by their path. :func:`upgrade_inputs` reads a ``/1`` record with today's names, so
earlier bundles replay.
"""
from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import re

from ..errors import BundleError
from ..messages import Joined, Localized, Message, Text, catalogue
from ..results import ArtefactMeta, ScenarioResult, StepStatus
from ..running.scenarios import Catalogue, Scenario
from ..verdicts import Severity, Verdict, combine

M = catalogue(__name__)

FORMAT = "harness-bundle/3"
FORMATS = ("harness-bundle/1", "harness-bundle/2", FORMAT)  # what this version reads
SUMMARY_FORMATS = ("harness-bundle/2", FORMAT)  # whose summaries this version renders alike


# -- the shape of a manifest, checked before anything reads it ------------------------

ANY = object()
HEX = re.compile(r"^[0-9a-f]{64}$")
TEXTS = {"fr": str, "en": str}
VERDICTS = ("enum", tuple(v.value for v in Verdict))
SCENARIO = {"id": str, "title": TEXTS, "requirements": [str], "profiles": [str], "criticality": str, "proof": str, "tags": [str],
            "collect": [str], "checks": [str], "file": str, "collect_mode?": ("enum", ("all", "any"))}
REQUIREMENT = {"verdict": VERDICTS, "scenarios": [str], "id": str, "source": str, "level": str, "text": TEXTS, "official_ids?": [str]}
UNPROVEN = {"id": str, "source": str, "level": str, "text": TEXTS, "official_ids?": [str], "tags": [str]}
COLLECT = {"name": str, "status": ("enum", tuple(s.value for s in StepStatus)), "message?": TEXTS, "outputs?": ("map", str, HEX),
           "refused?": [{"item": str, "reason": TEXTS}]}
CHECK = {"name": str, "verdict": VERDICTS, "assertions": int, "reasons": [TEXTS], "findings": int, "sensitive?": [str]}
RESULT = {"scenario": str, "requirements": [str], "verdict": VERDICTS, "collect": [COLLECT], "inputs": ("map", str, HEX),
          "checks": [CHECK], "reason?": TEXTS}
MANIFEST = {
    "format": ("enum", FORMATS), "run_id": str, "started_at": str, "finished_at": str, "harness": ("map", str, str),
    "plugins": ("map", str, str), "blocked_plugins": [str], "target_file": str, "target": ("map", str, ANY),
    "options": ("map", str, ANY), "scenarios": [SCENARIO], "requirements": ("map", str, REQUIREMENT), "results": [RESULT],
    "artefacts": ("map", HEX, {"size": int, "media_type": str, "label": str}), "sensitive_data?": [str],
    "masking?": {"method": str, "salt": str}, "incidents?": [TEXTS], "coverage?": {"unproven": ("map", str, UNPROVEN)},
    "rules?": ("map", str, HEX), "members": ("map", str, HEX),  # older manifests lack the first two
}
FINDINGS = [{"rule": str, "requirement": str, "severity": ("enum", tuple(s.value for s in Severity)), "location": str,
             "message": TEXTS, "artefact": ("optional", HEX), "check?": str}]


def _kind(spec: Any) -> Message:
    return M("kind.string") if spec is str else M("kind.integer")


def shape_problems(value: Any, spec: Any, where: str = "$", limit: int = 20) -> list[Message]:
    """What makes ``value`` differ from ``spec`` (at most ``limit`` problems), each with its JSON path."""
    problems: list[Message] = []
    stack = [(value, spec, where)]
    while stack and len(problems) < limit:
        node, sp, at = stack.pop()
        if sp is ANY:
            continue
        if isinstance(sp, re.Pattern):
            if not (isinstance(node, str) and sp.match(node)):
                problems.append(M("shape.digest", where=at))
        elif sp is str or sp is int:
            if not isinstance(node, sp) or isinstance(node, bool):
                problems.append(M("shape.type", where=at, expected=_kind(sp)))
        elif isinstance(sp, list):
            if not isinstance(node, list):
                problems.append(M("shape.type", where=at, expected=M("kind.list")))
            else:
                stack.extend((item, sp[0], f"{at}[{i}]") for i, item in enumerate(node))
        elif isinstance(sp, dict):
            if not isinstance(node, dict):
                problems.append(M("shape.type", where=at, expected=M("kind.object")))
                continue
            keys = {k.rstrip("?"): k.endswith("?") for k in sp}
            problems += [M("shape.unknown_key", where=at, key=k) for k in sorted(set(node) - set(keys))]
            problems += [M("shape.missing_key", where=at, key=k) for k, optional in keys.items() if not optional and k not in node]
            stack.extend((node[k], sp[k + "?" if optional else k], f"{at}.{k}") for k, optional in keys.items() if k in node)
        elif sp[0] == "enum":
            if node not in sp[1]:
                problems.append(M("shape.enum", where=at, value=repr(node)[:40], allowed=", ".join(map(str, sp[1]))))
        elif sp[0] == "optional":
            if node is not None:
                stack.append((node, sp[1], at))
        elif sp[0] == "map":
            if not isinstance(node, dict):
                problems.append(M("shape.type", where=at, expected=M("kind.object")))
            else:
                for k, v in node.items():
                    stack.append((k, sp[1], f"{at} key {k!r}"))
                    stack.append((v, sp[2], f"{at}[{k!r}]"))
    return problems[:limit]


def reference_problems(d: dict[str, Any]) -> list[Message]:
    """Names that point nowhere: an input whose artefact is not indexed, a result of no scenario."""
    problems = []
    scenarios = {s["id"] for s in d["scenarios"]}
    for i, r in enumerate(d["results"]):
        if r["scenario"] not in scenarios:
            problems.append(M("shape.unknown_scenario", where=f"$.results[{i}]", scenario=r["scenario"]))
        for name, digest in r["inputs"].items():
            if digest not in d["artefacts"]:
                problems.append(M("shape.unknown_artefact", where=f"$.results[{i}].inputs[{name!r}]", digest=digest))
    return problems


def manifest_problems(d: Any) -> list[Message]:
    """Everything that keeps a manifest from being read as one (empty: it can be)."""
    problems = shape_problems(d, MANIFEST)
    return problems or reference_problems(d)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def platform_versions(core: str) -> dict[str, str]:
    return {
        "version": core,
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "pytest": _version("pytest"),
        "pluggy": _version("pluggy"),
        "lxml": _version("lxml"),
    }


def upgrade_inputs(names: dict[str, str], fmt: str) -> dict[str, str]:
    """Input names of a ``fmt`` record, as this version names them."""
    if fmt != "harness-bundle/1":
        return dict(names)
    out = {}
    for name, digest in names.items():
        group, sep, item = name.partition("/")
        if sep and item.endswith(".exchange") and "/" not in item:
            name = f"{group}.exchange/{item.removesuffix('.exchange')}"
        out[name] = digest
    return out


def requirement_verdicts(catalogue: Catalogue, results: list[ScenarioResult]) -> dict[str, dict]:
    """Per requirement: the combined verdict of its scenarios, and what it is."""
    out: dict[str, tuple[list[str], list[Verdict]]] = {}
    for r in results:
        for req in r.requirements:
            scenarios, verdicts = out.setdefault(req, ([], []))
            scenarios.append(r.scenario)
            verdicts.append(r.verdict)
    return {
        req: {"verdict": combine(verdicts).value, "scenarios": scenarios, **catalogue.requirements[req].to_json()}
        for req, (scenarios, verdicts) in sorted(out.items())
    }


@dataclass
class Manifest:
    """``manifest.json``. ``members`` (SHA-256 of every other member) is set when written."""

    run_id: str
    started_at: str
    finished_at: str
    harness: dict[str, str]
    plugins: dict[str, str]
    blocked_plugins: list[str]
    target_file: str
    target: dict[str, Any]
    options: dict[str, Any]
    scenarios: list[dict[str, Any]]
    requirements: dict[str, dict[str, Any]]
    results: list[ScenarioResult]
    artefacts: dict[str, ArtefactMeta]
    sensitive_data: list[str]
    masking: dict[str, str]
    incidents: list[Localized] = field(default_factory=list)  # what went wrong around the checks
    # requirements of the selected tags no scenario of the run proves (the coverage matrix)
    coverage: dict[str, Any] = field(default_factory=dict)
    # SHA-256 of the rule files of the core and of each plugin (harness.running.plugins.rules_fingerprints)
    rules: dict[str, str] = field(default_factory=dict)
    format: str = FORMAT
    members: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, *, run_id: str, started_at: str, finished_at: str, core_version: str, plugins: dict[str, str], blocked: list[str],
              target: dict, target_file: str, options: dict, catalogue: Catalogue, selected: list[Scenario],
              results: list[ScenarioResult], salt: str, incidents: list[Localized] = ()) -> "Manifest":
        artefacts: dict[str, ArtefactMeta] = {}
        for r in results:
            for digest, meta in sorted(r.artefacts.items()):
                artefacts.setdefault(digest, meta)
        return cls(
            run_id=run_id, started_at=started_at, finished_at=finished_at, harness=platform_versions(core_version),
            plugins=plugins, blocked_plugins=blocked, target_file=target_file, target=target, options=options,
            scenarios=[s.to_json() for s in selected], requirements=requirement_verdicts(catalogue, results), results=results,
            artefacts=artefacts,
            # what sensitive data the recorded artefacts hold, as the checks found it
            # (``production-identity``: real INS matricules), and the salt of masked values
            sensitive_data=sorted({kind for r in results for kind in r.sensitive}),
            masking={"method": "hmac-sha256/12", "salt": salt},
            incidents=list(incidents),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": self.format, "run_id": self.run_id, "started_at": self.started_at, "finished_at": self.finished_at,
            "harness": self.harness, "plugins": self.plugins, "blocked_plugins": self.blocked_plugins,
            "target_file": self.target_file, "target": self.target, "options": self.options, "scenarios": self.scenarios,
            "requirements": self.requirements, "results": [r.record() for r in self.results],
            "artefacts": {k: v.to_json() for k, v in self.artefacts.items()},
            "sensitive_data": self.sensitive_data, "masking": self.masking,
        }
        if self.incidents:
            d["incidents"] = [i.texts() for i in self.incidents]
        if self.coverage:
            d["coverage"] = self.coverage
        if self.rules:
            d["rules"] = self.rules
        if self.members:
            d["members"] = self.members
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Manifest":
        """A manifest read back (results without their findings, which are members);
        :class:`BundleError` naming what is wrong when it is not one."""
        problems = manifest_problems(d)
        if problems:
            raise BundleError(M("shape.invalid", problems=Joined(tuple(problems))))
        fmt = d.get("format", "")
        results = []
        for r in d.get("results", []):
            result = ScenarioResult.from_json(r, findings=[])
            result.inputs = upgrade_inputs(result.inputs, fmt)
            results.append(result)
        return cls(
            run_id=d["run_id"], started_at=d["started_at"], finished_at=d.get("finished_at", ""), harness=dict(d.get("harness", {})),
            plugins=dict(d.get("plugins", {})), blocked_plugins=list(d.get("blocked_plugins", [])), target_file=d.get("target_file", "-"),
            target=dict(d.get("target", {})), options=dict(d.get("options", {})), scenarios=list(d.get("scenarios", [])),
            requirements=dict(d.get("requirements", {})), results=results,
            artefacts={k: ArtefactMeta.from_json(v) for k, v in d.get("artefacts", {}).items()},
            sensitive_data=list(d.get("sensitive_data", [])), masking=dict(d.get("masking", {})),
            incidents=[Text.of(i) for i in d.get("incidents", [])], format=fmt, members=dict(d.get("members", {})),
            coverage=dict(d.get("coverage", {})), rules=dict(d.get("rules", {})),
        )
