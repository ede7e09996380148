"""Helpers for end-to-end tests: run the harness as a user would, in a subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunOutcome:
    returncode: int
    stdout: str
    stderr: str
    bundle: Path | None

    @property
    def manifest(self) -> dict:
        with zipfile.ZipFile(self.bundle) as zf:
            return json.loads(zf.read("manifest.json"))

    def requirement_verdicts(self) -> dict[str, str]:
        return {req: info["verdict"] for req, info in self.manifest["requirements"].items()}

    def failing(self) -> set[str]:
        return {req for req, v in self.requirement_verdicts().items() if v == "FAIL"}

    def findings(self) -> list[dict]:
        out = []
        with zipfile.ZipFile(self.bundle) as zf:
            for name in sorted(zf.namelist()):
                if name.startswith("findings/"):
                    out.extend(json.loads(zf.read(name)))
        return out


def harness_env(env: dict | None = None) -> dict[str, str]:
    """The environment of a harness run: this one's, without pytest's and the harness's own settings."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HARNESS_"))}
    full_env.update(env or {})
    return full_env


def run_harness(cwd: Path, *args: str, env: dict | None = None, timeout: int = 180, allure: bool = False) -> RunOutcome:
    evidence = cwd / "reports"
    before = set(evidence.glob("*.zip")) if evidence.exists() else set()
    full_env = harness_env(env)
    proc = subprocess.run(
        # hypothesis (a dev dependency) registers a pytest plugin whose import costs 0.8 s in each
        # of the suite's ~200 harness runs; a scenario run has no use for it
        # of the suite's ~200 harness runs; a scenario run has no use for it. Allure results are
        # written only for the tests about them.
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", *(() if allure else ("-p", "no:allure_pytest")), *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
    after = set(evidence.glob("*.zip")) if evidence.exists() else set()
    new = sorted(after - before)
    return RunOutcome(proc.returncode, proc.stdout, proc.stderr, new[-1] if new else None)


def assert_defects_caught(cwd: Path, scenario: str, defects: list[str], expected: set[tuple[str, str]]) -> RunOutcome:
    """Run ``scenario`` on the demo with ``defects``: every (requirement, rule) of ``expected``
    is among the failing findings, and the run fails."""
    run = run_harness(cwd, "--scenario", scenario, "--lang", "en", *[a for d in defects for a in ("--defect", d)])
    assert run.bundle is not None, run.stdout + run.stderr
    failing = {(f["requirement"], f["rule"]) for f in run.findings() if f["severity"] in ("error", "critical")}
    assert expected <= failing, (failing, run.stdout)
    assert run.returncode == 1
    return run
