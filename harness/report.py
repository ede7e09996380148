"""Building the manifest from a run's results, and rendering the human summary from it."""
from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

from .bundle import FORMAT
from .i18n import t
from .scenarios import Catalogue, Scenario
from .verdicts import Verdict, combine


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def not_run_result(scenario: Scenario, reason: dict[str, str]) -> dict[str, Any]:
    return {
        "scenario": scenario.id,
        "requirements": list(scenario.requirements),
        "verdict": Verdict.NOT_RUN.value,
        "collect": [],
        "inputs": {},
        "checks": [],
        "reason": reason,
        "findings": [],
        "artefacts": {},
    }


def requirement_verdicts(catalogue: Catalogue, results: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in results:
        for req in r["requirements"]:
            entry = out.setdefault(req, {"scenarios": [], "verdicts": []})
            entry["scenarios"].append(r["scenario"])
            entry["verdicts"].append(Verdict(r["verdict"]))
    return {
        req: {
            "verdict": combine(e["verdicts"]).value,
            "scenarios": e["scenarios"],
            **catalogue.requirements[req].to_dict(),
        }
        for req, e in sorted(out.items())
    }


def build_manifest(
    *,
    run_id: str,
    started_at: str,
    finished_at: str,
    harness_version: str,
    plugins: dict[str, str],
    blocked: list[str],
    target: dict,
    target_file: str,
    options: dict,
    catalogue: Catalogue,
    selected: list[Scenario],
    results: list[dict],
    salt: str = "",
) -> dict[str, Any]:
    artefacts: dict[str, dict] = {}
    for r in results:
        for digest, meta in sorted(r["artefacts"].items()):
            artefacts.setdefault(digest, meta)
    sensitive = sorted({kind for r in results for c in r.get("checks", []) for kind in c.get("sensitive", [])})
    return {
        "format": FORMAT,
        "run_id": run_id,
        "started_at": started_at,
        "finished_at": finished_at,
        "harness": {
            "version": harness_version,
            "python": platform.python_version(),
            "implementation": sys.implementation.name,
            "platform": platform.platform(),
            "pytest": _version("pytest"),
            "pluggy": _version("pluggy"),
            "lxml": _version("lxml"),
        },
        "plugins": plugins,
        "blocked_plugins": blocked,
        "target_file": target_file,
        "target": target,
        "options": options,
        "scenarios": [s.to_dict() for s in selected],
        "requirements": requirement_verdicts(catalogue, results),
        "results": [{k: v for k, v in r.items() if k not in ("findings", "artefacts")} for r in results],
        "artefacts": artefacts,
        # What sensitive data the recorded artefacts hold, as the checks found it
        # (``production-identity``: real INS matricules), and the salt of masked values.
        "sensitive_data": sensitive,
        "masking": {"method": "hmac-sha256/12", "salt": salt},
    }


_ICON = {"PASS": "✔", "FAIL": "✘", "ERROR": "!", "INCONCLUSIVE": "?", "NOT_RUN": "-", "MANUAL_PENDING": "…"}


def render_summary(manifest: dict, findings: dict[str, list[dict]], lang: str, bundle_path: str | None = None) -> str:
    """A short text: one line per requirement, then the failing findings, then the bundle."""
    lines = [f"{t('summary_title', lang)} — run {manifest['run_id']}"]
    for req, info in manifest["requirements"].items():
        v = info["verdict"]
        lines.append(f"  {_ICON.get(v, ' ')} {v:<14} {req:<18} {info['text'][lang]}")
    shown = []
    for r in manifest["results"]:
        for f in findings.get(r["scenario"], []):
            if f["severity"] in ("critical", "error"):
                shown.append(f"    [{f['rule']}] {f['requirement']} @ {f['location']}: {f['message'][lang]}")
        for c in r.get("checks", []):
            for reason in c.get("reasons", []):
                shown.append(f"    ({c['verdict']}) {r['scenario']}/{c['name']}: {reason[lang]}")
        for c in r.get("collect", []):
            if c["status"] != "ok":
                label = "NOT_RUN" if c["status"] == "not-applicable" else "ERROR"
                shown.append(f"    ({label}) {r['scenario']}/{c['name']}: {c['message'][lang]}")
        if r.get("reason"):
            shown.append(f"    (NOT_RUN) {r['scenario']}: {r['reason'][lang]}")
    lines.extend(shown)
    for kind in manifest.get("sensitive_data", []):
        lines.append(t("summary_sensitive", lang, kind=kind))
    if bundle_path:
        lines.append(t("summary_bundle", lang, path=bundle_path))
    return "\n".join(lines) + "\n"


def not_run_reason() -> dict[str, str]:
    return {"fr": "scénario sélectionné mais non exécuté (interruption ou désélection)", "en": "scenario selected but not run (interrupted or deselected)"}

