"""A whole run's bookkeeping: ids, staging store, and sealing the bundle at the end."""
from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .bundle import write_bundle
from .evidence import ObjectStore, utc_now
from .i18n import LANGS
from .report import build_manifest, not_run_reason, not_run_result, render_summary
from .scenarios import Catalogue, Scenario


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)


def staging_dir(evidence_dir: Path, run_id: str) -> Path:
    """Where workers put artefacts while the run lasts; hidden, removed once sealed."""
    return Path(evidence_dir) / f".staging-{run_id}"


@dataclass
class RunInfo:
    run_id: str
    started_at: str
    evidence_dir: Path
    results: dict[str, dict] = field(default_factory=dict)
    # Masks sensitive values in findings (CheckContext.mask); one per run, shared with workers.
    salt: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def store(self) -> ObjectStore:
        return ObjectStore(staging_dir(self.evidence_dir, self.run_id) / "objects")


def seal(
    info: RunInfo,
    *,
    catalogue: Catalogue,
    selected: list[Scenario],
    harness_version: str,
    plugins: dict[str, str],
    blocked: list[str],
    target: dict,
    target_file: str,
    options: dict[str, Any],
) -> tuple[Path, dict, dict[str, list[dict]]]:
    """Write ``<evidence_dir>/<run_id>.zip`` from the results and the staging store."""
    results = [info.results.get(s.id) or not_run_result(s, not_run_reason()) for s in selected]
    manifest = build_manifest(
        run_id=info.run_id,
        started_at=info.started_at,
        finished_at=utc_now(),
        harness_version=harness_version,
        plugins=plugins,
        blocked=blocked,
        target=target,
        target_file=target_file,
        options=options,
        catalogue=catalogue,
        selected=selected,
        results=results,
        salt=info.salt,
    )
    findings = {r["scenario"]: r["findings"] for r in results}
    store = info.store
    members: dict[str, Any] = {}
    for digest in manifest["artefacts"]:
        members[f"artefacts/{digest}"] = (lambda d=digest: store.get(d))
    for sid, items in findings.items():
        members[f"findings/{sid}.json"] = json.dumps(items, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")
    for lang in LANGS:
        members[f"summary.{lang}.txt"] = render_summary(manifest, findings, lang).encode("utf-8")
    path = write_bundle(Path(info.evidence_dir) / f"{info.run_id}.zip", manifest, members)
    shutil.rmtree(staging_dir(info.evidence_dir, info.run_id), ignore_errors=True)
    return path, manifest, findings
