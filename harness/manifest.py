"""The manifest of an evidence bundle: what ran, with what, and what it concluded.

Format ``harness-bundle/2`` (this version) differs from ``harness-bundle/1`` in two
points only: the exchanges of a document index are a collection of their own
(``doc-live.exchange/001`` instead of ``doc-live/001.exchange``), and scenario files are
named by their path. :func:`upgrade_inputs` reads a ``/1`` record with today's names, so
earlier bundles replay.
"""
from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from .messages import Localized, Text
from .results import ArtefactMeta, ScenarioResult
from .scenarios import Catalogue, Scenario
from .verdicts import Verdict, combine

FORMAT = "harness-bundle/2"
FORMATS = ("harness-bundle/1", FORMAT)  # what this version reads


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
        if self.members:
            d["members"] = self.members
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Manifest":
        """A manifest read back (results without their findings, which are members)."""
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
        )
