"""A whole run's bookkeeping: ids, the staging store workers share, and sealing the bundle."""
from __future__ import annotations

import fcntl
import json
import secrets
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pluggy

from ..evidence.bundle import write_bundle
from ..evidence.recorder import ObjectStore, utc_now
from ..evidence.manifest import Manifest
from ..messages import LANGS, Localized, catalogue
from ..results import ScenarioResult
from ..running.scenarios import Catalogue, Scenario
from ..evidence.summary import ReportSection, SummaryContext, render_summary
from ..verdicts import Finding

M = catalogue(__name__)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)


STAGING_PREFIX = ".staging-"
LOCK = "run.lock"


def staging_dir(evidence_dir: Path, run_id: str) -> Path:
    """Where workers put artefacts while the run lasts; hidden, removed once sealed."""
    return Path(evidence_dir) / f"{STAGING_PREFIX}{run_id}"


class RunLock:
    """Held by the process that seals a run, for as long as it lasts: a staging folder whose
    lock nobody holds belongs to a run that was killed, and is debris."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._fh = open(folder / LOCK, "a+b")
        fcntl.flock(self._fh, fcntl.LOCK_EX)

    def release(self) -> None:
        self._fh.close()


def _abandoned(folder: Path, grace: float) -> bool:
    lock = folder / LOCK
    if not lock.exists():  # a run that had not taken its lock yet, or an earlier version's
        return time.time() - folder.stat().st_mtime > grace
    with open(lock, "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a live run
        fcntl.flock(fh, fcntl.LOCK_UN)
        return True


def clean_debris(evidence_dir: Path, grace: float = 60.0) -> list[str]:
    """Remove what killed runs left in ``evidence_dir`` (staging folders, half-written
    bundles); what live runs use is left alone. Returns the run ids cleaned."""
    folder = Path(evidence_dir)
    cleaned = []
    for staging in sorted(folder.glob(f"{STAGING_PREFIX}*")) if folder.is_dir() else []:
        if staging.is_dir() and not staging.is_symlink() and _abandoned(staging, grace):
            run_id = staging.name[len(STAGING_PREFIX):]
            shutil.rmtree(staging, ignore_errors=True)
            for partial in folder.glob(f".{run_id}.zip.*.partial"):
                partial.unlink(missing_ok=True)
            cleaned.append(run_id)
    return cleaned


@dataclass
class RunInfo:
    run_id: str
    started_at: str
    evidence_dir: Path
    results: dict[str, ScenarioResult] = field(default_factory=dict)
    incidents: list[Localized] = field(default_factory=list)
    # Masks sensitive values in findings (CheckContext.mask); one per run, shared with workers.
    salt: str = field(default_factory=lambda: secrets.token_hex(16))
    store_root: Path | None = None  # a run recorded by a command keeps its store in its own folder (proof.recorded)

    @property
    def store(self) -> ObjectStore:
        return ObjectStore(self.store_root or staging_dir(self.evidence_dir, self.run_id) / "objects")


@dataclass
class Sealed:
    path: Path
    manifest: Manifest
    findings: dict[str, list[Finding]]
    sections: dict[str, list[ReportSection]]


def report_sections(pm: pluggy.PluginManager, manifest: Manifest, findings: dict[str, list[Finding]], read, lang: str,
                    incidents: list[Localized]) -> list[ReportSection]:
    """Every plugin's sections; a plugin that fails here costs its section, not the bundle."""
    sections: list[ReportSection] = []
    summary = SummaryContext(manifest, findings, read, lang)
    for impl in pm.hook.harness_report_sections.get_hookimpls():  # registration order
        try:
            sections.extend(impl.function(summary=summary) or [])
        except Exception as exc:
            incidents.append(M("report.section_failed", plugin=impl.plugin_name, error=f"{type(exc).__name__}: {exc}"))
    return sections


def _reports(manifest: Manifest, findings: dict[str, list[Finding]], store: ObjectStore, lang: str,
             incidents: list[Localized]) -> dict[str, bytes]:
    """The HTML report and the coverage matrix as members; failing to render them costs them,
    not the bundle (an incident says so)."""
    from ..reporting import report

    source = report.Source.derived(manifest, findings, store.get)
    try:
        return report.members(source, lang)
    except Exception as exc:
        incidents.append(M("report.failed", error=f"{type(exc).__name__}: {exc}"))
        return {}


def seal(info: RunInfo, *, pm: pluggy.PluginManager, catalogue: Catalogue, selected: list[Scenario], core_version: str,
         plugins: dict[str, str], blocked: list[str], target: dict, target_file: str, options: dict[str, Any],
         sign: Callable[[bytes], bytes] | None = None, lang: str = LANGS[0], rules: dict[str, str] | None = None) -> Sealed:
    """Write ``<evidence_dir>/<run_id>.zip`` from the results and the staging store."""
    results = [info.results.get(s.id) or ScenarioResult.not_run(s.id, list(s.requirements), M("summary.not_run")) for s in selected]
    store = info.store
    manifest = Manifest.build(run_id=info.run_id, started_at=info.started_at, finished_at=utc_now(), core_version=core_version,
                              plugins=plugins, blocked=blocked, target=target, target_file=target_file, options=options,
                              catalogue=catalogue, selected=selected, results=results, salt=info.salt)
    findings = {r.scenario: r.findings for r in results}
    sections = {lg: report_sections(pm, manifest, findings, store.get, lg, info.incidents if lg == LANGS[0] else []) for lg in LANGS}
    manifest.incidents = list(info.incidents)
    manifest.rules = dict(rules or {})
    manifest.coverage = {"unproven": catalogue.unproven(options.get("scenarios", []), manifest.requirements)}
    members: dict[str, Any] = {}
    for digest in manifest.artefacts:
        members[f"artefacts/{digest}"] = (lambda d=digest: store.get(d))
    for sid, items in findings.items():
        members[f"findings/{sid}.json"] = json.dumps([f.to_json() for f in items], ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")
    for lg in LANGS:
        members[f"summary.{lg}.txt"] = render_summary(manifest, findings, lg, sections=sections[lg]).encode("utf-8")
    from concurrent.futures import ThreadPoolExecutor

    from ..reporting.report import CSV, HTML, REPORTS, XLSX

    # The reports are rendered while the artefacts, written first, are deflated (zlib lets go
    # of the interpreter's lock): measured, 0.4 s of a 4 s run. Each report member waits for them.
    with ThreadPoolExecutor(max_workers=1) as pool:
        rendered = pool.submit(_reports, manifest, findings, store, lang, info.incidents)

        def report(name: str) -> Callable[[], bytes | None]:
            def member() -> bytes | None:
                said = rendered.result()
                manifest.incidents = list(info.incidents)  # with the reports' own, if rendering them failed
                return said.get(name)  # None: not rendered, not written
            return member

        for name in (HTML, CSV, XLSX):
            members[REPORTS + name] = report(REPORTS + name)
        path = write_bundle(Path(info.evidence_dir) / f"{info.run_id}.zip", manifest, members, sign)
    shutil.rmtree(staging_dir(info.evidence_dir, info.run_id), ignore_errors=True)
    return Sealed(path, manifest, findings, sections)
