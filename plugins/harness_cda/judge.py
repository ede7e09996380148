"""One document at a time, the way the ``cda-kit-*`` scenarios record and judge it.

The kit server's one-document answer (``harness-kit-check``), and each worker of a batch
(``harness kit batch``, local processes or a Dask cluster), run the plugin's own collectors on
a folder holding that one document, then the scenarios' own checks on what they recorded: the
same input names, the same bytes, the same findings as a scenario run over a folder of those
documents, by construction (a test holds it on the 94 official examples).

Each process compiles each stylesheet at most once (:func:`collect.saxon`), and runs them
itself: a judge never asks the kit server (it may be the kit server).
"""
from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from harness import Artefact, CheckContext, CollectContext, Evaluation, HarnessError, Target, Verdict, catalogue

from . import checks, collect

M = catalogue(__name__)

def _scenarios() -> dict[str, tuple[tuple[str, ...], tuple[str, ...], str]]:
    """scenario -> (its collectors, its checks, its requirement), read from the plugin's own
    scenario file (scenarios/cda-kit.toml), where each is written once."""
    import tomllib

    with open(Path(__file__).with_name("scenarios") / "cda-kit.toml", "rb") as fh:
        said = tomllib.load(fh)
    return {s["id"]: (tuple(s["collect"]), tuple(s["checks"]), s["requirements"][0]) for s in said["scenario"]}


SCENARIOS = _scenarios()
# a file name the collectors read from a folder (*.xml, not hidden), without a folder or a control character
_NAME = re.compile(r"[^./\\\x00-\x1f\x7f][^/\\\x00-\x1f\x7f]*\.xml")
_SCHEMA = {"cda": {"kit": "path", "documents": "path"}}


@dataclass
class Judged:
    """One document judged: what was recorded (input name -> artefact; the bytes by SHA-256),
    and per scenario its verdict, assertions and findings (as the bundle writes them)."""

    name: str
    sha256: str  # of the document's bytes
    inputs: dict[str, Artefact] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    results: dict[str, dict] = field(default_factory=dict)
    refused: list[dict] = field(default_factory=list)  # {"item", "reason": {fr, en}}
    collectors: dict[str, list[str]] = field(default_factory=dict)  # collector -> the inputs it recorded
    seconds: float = 0.0

    def verdict(self) -> str:
        """The document's verdict over the scenarios, combined as the core combines them."""
        return Verdict.combine(r["verdict"] for r in self.results.values()).value

    def summary(self) -> dict:
        """What a results line says of it (no bytes): inputs by SHA-256, verdicts, findings."""
        return {"document": self.name, "sha256": self.sha256, "verdict": self.verdict(), "seconds": round(self.seconds, 4),
                "inputs": {k: [a.sha256, a.size, a.media_type, a.label] for k, a in sorted(self.inputs.items())},
                "collectors": self.collectors, "results": self.results, "refused": self.refused}


class Judge:
    """The kit on one document at a time, in this process. ``kit`` is the kit's folder."""

    def __init__(self, kit: str | Path) -> None:
        self.kit = Path(kit).resolve()
        self._folder = Path(tempfile.mkdtemp(prefix="harness-judge-"))
        # gone with the judge, or when its process ends (a batch worker's never calls close())
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self._folder), True)
        self._collectors = collect.kit_collectors()
        self._checks = checks.kit_checks()

    def close(self) -> None:
        self._cleanup()

    def __enter__(self) -> "Judge":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def judge(self, data: bytes, name: str) -> Judged:
        """Record the document as the scenarios do, then judge it with their checks."""
        started = time.perf_counter()
        if not _NAME.fullmatch(name) or len(name.encode("utf-8")) > 255:
            raise HarnessError(M("judge.name", name=name[:80]))
        for old in self._folder.iterdir():
            old.unlink()
        collect.forget_files()  # a document of the same name, size and time is another document here
        path = self._folder / name
        path.write_bytes(data)
        try:
            judged = Judged(name, hashlib.sha256(data).hexdigest())
            target = Target.from_record({"cda": {"kit": str(self.kit), "documents": str(self._folder)}}, _SCHEMA)

            def record(body: bytes, *, media_type: str, label: str) -> Artefact:
                digest = hashlib.sha256(body).hexdigest()
                judged.blobs[digest] = body
                return Artefact(digest, len(body), media_type, label)

            ctx = CollectContext(target=target, record=record, http=None, service_url=lambda _: "", lang="fr")
            outputs: dict[str, dict[str, Artefact]] = {}
            for cname, fn in self._collectors.items():
                try:
                    with collect.locally():
                        outputs[cname] = fn(ctx)
                except HarnessError as exc:
                    # the collectors record what a document does wrong; what they raise is the kit's
                    # or the machine's (no kit there): the document is not judged, and that is said
                    raise HarnessError(M("judge.collector", collector=cname, reason=exc.detail)) from None
            judged.refused = [{"item": item, "reason": reason.texts()} for item, reason in ctx.refused]
            for cname, out in outputs.items():
                judged.inputs.update(out)
                judged.collectors[cname] = sorted(out)
            for scenario, (needs, check_names, requirement) in SCENARIOS.items():
                judged.results[scenario] = self._evaluate(scenario, needs, check_names, requirement, outputs, judged, target)
        finally:
            path.unlink(missing_ok=True)
        judged.seconds = time.perf_counter() - started
        return judged

    def _evaluate(self, scenario, needs, check_names, requirement, outputs, judged: Judged, target) -> dict:
        """The scenario's checks on this document's inputs, as :func:`harness` evaluates them: the
        worst verdict of its checks, their findings in order."""
        inputs = {k: a for c in needs for k, a in outputs[c].items()}
        verdicts, assertions, findings, kit, reasons = [], 0, [], [], []
        for check_name in check_names:
            fn = self._checks[check_name]
            ev = Evaluation(requirement=requirement)
            ctx = CheckContext(inputs, judged.blobs.__getitem__, target, scenario, reads=getattr(fn, "reads", None))
            try:
                fn(ctx, ev)
            except HarnessError as exc:
                ev.error(exc.detail)
            except Exception as exc:  # a bug in a check: ERROR, as the core says it of a scenario
                ev.error(M("judge.crashed", error=f"{type(exc).__name__}: {exc}"[:500]))
            verdicts.append(ev.verdict)
            assertions += ev.assertions
            reasons += [m.texts() for m in ev.errors + ev.inconclusive_reasons]
            for f in ev.findings:
                d = f.to_json()
                d["check"] = check_name
                # what the check says of the kit itself (its quirks) is said again for every document
                # judged alone: kept apart, so that a batch keeps it once
                (kit if f.location.startswith("kit:") else findings).append(d)
        verdict = Verdict.combine(verdicts).value if not judged.refused else Verdict.ERROR.value
        return {"verdict": verdict, "assertions": assertions, "findings": findings, "kit_findings": kit, "reasons": reasons}
