"""The test suite's cost: wall time, CPU time, tests, and harness runs started (subprocesses
of `pytest --scenario ...`), for this checkout or another commit.

    python bench/suite.py                # this checkout, `pytest -n 2` as the README says
    python bench/suite.py --at 7c47877   # another commit: a worktree with a virtualenv of its own

Each harness run the suite starts is counted through ``TEST_RUN_LOG`` (tests/harness_run.py
appends one line per run; for a commit from before that line existed, the same line is added
to the worktree's copy). Run it on an otherwise idle machine: the timings are the machine's, and
``machine_cpu_s`` (all of the machine's CPU time meanwhile) counts what ``cpu_s`` cannot: the
processes a browser leaves to init, and each worker's fork server (tests/harness_zygote.py)
when the worker exits without waiting for it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COUNTER = '''    if os.environ.get("TEST_RUN_LOG"):  # counting the suite's harness runs (bench/suite.py)
        with open(os.environ["TEST_RUN_LOG"], "a", encoding="utf-8") as log:
            log.write(json.dumps(list(args)) + "\\n")
'''


def _worktree(rev: str, into: Path) -> tuple[Path, Path]:
    """A worktree of ``rev`` with its own virtualenv (installed from its own files)."""
    subprocess.run(["git", "worktree", "add", "--detach", str(into), rev], cwd=ROOT, check=True, capture_output=True)
    shared = ROOT.parent / "shared"
    if shared.exists() and not (into.parent / "shared").exists():
        (into.parent / "shared").symlink_to(shared)
    run = into / "tests" / "harness_run.py"
    text = run.read_text()
    if "TEST_RUN_LOG" not in text:
        head = "def run_harness(cwd: Path, *args: str, env: dict | None = None, timeout: int = 180, allure: bool = False) -> RunOutcome:\n"
        if head not in text:
            raise SystemExit(f"{rev}: tests/harness_run.py has no run_harness to count")
        run.write_text(text.replace(head, head + COUNTER))
    venv = into / ".venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "-e", ".[dev]"], cwd=into, check=True)
    return into, venv / "bin" / "pytest"


def _machine_cpu() -> float | None:
    """CPU seconds the whole machine spent (user, nice, system), from /proc/stat: processes the
    suite starts but never waits for (a browser's, reparented once its driver exits) count too."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:4]
        return sum(int(f) for f in fields) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def measure(folder: Path, pytest: Path, workers: int) -> dict:
    log = Path(tempfile.mkstemp(prefix="harness-runs-", suffix=".jsonl")[1])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    machine = _machine_cpu()
    started = time.monotonic()
    proc = subprocess.run([str(pytest), "-n", str(workers), "-q", "-p", "no:cacheprovider"], cwd=folder, capture_output=True, text=True,
                          env={**os.environ, "TEST_RUN_LOG": str(log)})
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    machine_after = _machine_cpu()
    runs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    log.unlink()
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors)", tail)}
    return {"wall_s": round(wall, 1), "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 1),
            "machine_cpu_s": round(machine_after - machine, 1) if machine is not None and machine_after is not None else None,
            "tests": counts, "harness_runs": len(runs), "exit": proc.returncode, "summary": tail}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--at", help="a commit to measure instead of this checkout")
    parser.add_argument("-n", type=int, default=2, help="xdist workers (default 2, as the README)")
    args = parser.parse_args()
    if args.at:
        tmp = Path(tempfile.mkdtemp(prefix="harness-suite-"))
        folder, pytest = _worktree(args.at, tmp / "main")
        try:
            result = measure(folder, pytest, args.n)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=ROOT, capture_output=True)
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        result = measure(ROOT, ROOT / ".venv" / "bin" / "pytest", args.n)
    print(json.dumps({"at": args.at or "checkout", **result}, indent=2))
    return 0 if result["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
