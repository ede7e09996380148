"""A run a command records itself, outside pytest: a batch over thousands of documents.

A batch (``harness kit batch``) cannot hold its work in pytest's items: it streams, writes
as it goes and resumes after an interruption. It records what its collectors would have
recorded, in its own folder, then asks this module to seal: each scenario's inputs are the
outputs of its collectors, its checks run on them through :func:`evaluate` (the one place
verdicts are derived, the place replay calls), and the bundle is written by :func:`seal`, as
a pytest run's. So the bundle verifies, replays and compares like any other.

The folder holds ``run.json`` (the run's id, start, masking salt: the same after a resume)
and ``objects/``, the content-addressed store; it survives an interruption, and is removed
once the bundle is sealed (unless asked to keep it); the command's own files there are its own.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

import pluggy

from ..errors import HarnessError
from ..evidence.recorder import ObjectStore, Recorder, utc_now
from ..files import atomic_write
from ..markers import blocked_plugins
from ..messages import LANGS, Localized, catalogue
from ..results import ArtefactMeta, CollectStep, ScenarioResult, StepStatus
from ..running.checking import evaluate
from ..running.context import Artefact
from ..running.plugins import core_version, plugin_versions, rules_fingerprints
from ..running.target import Target
from ..secrets import Scrubber
from .sealing import RunInfo, Sealed, new_run_id, seal

M = catalogue(__name__)
STATE = "run.json"


class RecordedRun:
    """A run recorded by a command. ``folder`` is its working folder: created, or reopened to
    resume (the same run id and salt); ``scenarios`` the scenarios (or groups) it proves."""

    def __init__(self, folder: str | Path, scenarios: Iterable[str], target: Target, *, evidence_dir: str | Path,
                 pm: pluggy.PluginManager | None = None, lang: str = LANGS[0]) -> None:
        from ..running.assembly import assemble

        self.folder = Path(folder).resolve()
        self.assembly = assemble(pm=pm)
        self.asked = list(scenarios)
        self.selected = self.assembly.catalogue.select(self.asked)
        self.target = target
        self.lang = lang
        self.evidence_dir = Path(evidence_dir).resolve()
        state = self.folder / STATE
        if state.exists():
            try:
                said = json.loads(state.read_text(encoding="utf-8"))
                run_id, started_at, salt = str(said["run_id"]), str(said["started_at"]), str(said["salt"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise HarnessError(M("recorded.state", path=str(state), error=type(exc).__name__)) from None
            self.resumed = True
        else:
            fresh = RunInfo(new_run_id(), utc_now(), self.evidence_dir)
            run_id, started_at, salt = fresh.run_id, fresh.started_at, fresh.salt
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(state, json.dumps({"run_id": run_id, "started_at": started_at, "salt": salt}).encode())
            self.resumed = False
        self.info = RunInfo(run_id, started_at, self.evidence_dir, salt=salt, store_root=self.folder / "objects")
        self.store: ObjectStore = self.info.store
        self._recorder = Recorder(self.store, Scrubber(target.secret_values()) if target.live else Scrubber(()))

    @property
    def run_id(self) -> str:
        return self.info.run_id

    def record(self, data: bytes, *, media_type: str, label: str) -> Artefact:
        """Keep ``data`` in the run's store (the target's secrets scrubbed, as every recording)."""
        return self._recorder.record(data, media_type=media_type, label=label)

    def has(self, digest: str) -> bool:
        return self.store.path(digest).is_file()

    def seal(self, outputs: Mapping[str, Mapping[str, Artefact]], *, refused: Mapping[str, list[tuple[str, Localized]]] | None = None,
             options: Mapping[str, Any] | None = None, keep: bool = False) -> Sealed:
        """Seal the run: ``outputs`` maps each collector to every input it recorded (over the
        whole batch), ``refused`` to what it did not take. Each selected scenario's inputs are
        its collectors' outputs; a collector with none recorded made the scenario NOT_RUN's
        cause: ERROR (it said nothing). Returns the sealed bundle."""
        results: dict[str, ScenarioResult] = {}
        recorded_target = self.target.recorded() if self.target.live else self.target
        for scenario in self.selected:
            steps: list[CollectStep] = []
            inputs: dict[str, Artefact] = {}
            for name in scenario.collect:
                if name not in outputs:
                    steps.append(CollectStep(name, StepStatus.ERROR, M("recorded.not_collected", collector=name), {},
                                             list((refused or {}).get(name, []))))
                    continue
                got = outputs[name]
                steps.append(CollectStep(name, StepStatus.OK, None, {k: a.sha256 for k, a in got.items()}, list((refused or {}).get(name, []))))
                inputs.update(got)
            verdict, checks, findings = evaluate(scenario, inputs, self.store.get, recorded_target, self.assembly.registry, steps,
                                                 self.info.salt, self.store.open)
            artefacts = {a.sha256: ArtefactMeta(a.size, a.media_type, a.label) for a in inputs.values()}
            results[scenario.id] = ScenarioResult(scenario.id, list(scenario.requirements), verdict, steps,
                                                  {k: a.sha256 for k, a in inputs.items()}, checks, findings, artefacts)
        self.info.results = results
        sealed = seal(self.info, pm=self.assembly.pm, catalogue=self.assembly.catalogue, selected=self.selected, core_version=core_version(),
                      plugins=plugin_versions(self.assembly.pm), blocked=blocked_plugins(), target=self.target.sanitized(),
                      target_file=self.target.path.name if self.target.path else "-",
                      options={"lang": self.lang, "scenarios": self.asked, **dict(options or {})},
                      lang=self.lang, rules=rules_fingerprints(self.assembly.pm))
        if not keep:  # what was recorded is in the bundle now; the command's own files are its to keep or remove
            shutil.rmtree(self.folder / "objects", ignore_errors=True)
            (self.folder / STATE).unlink(missing_ok=True)
        return sealed
