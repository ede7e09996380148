"""Render a demo run's Allure results with the two Allure renderers, from the npm registry:
Allure 2 (``allure-commandline``, Java) and Allure 3 (``allure``, Node.js).

    python bench/allure_render.py [--cache DIR]

Runs ``pytest --scenario all --defect version-undeclared --alluredir``, installs both
renderers into a cache folder (once), generates a report with each, and checks that every
scenario is in it with its status, steps and attachments: Allure 2's ``data/test-cases``,
Allure 3's ``summary.json`` (its counts). Prints what each renderer read.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]


def npm_install(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / "node_modules" / "allure-commandline").exists() or not (cache / "node_modules" / "allure").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "allure-commandline@2", "allure@3"], cwd=cache, check=True, timeout=600)
    return cache / "node_modules"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "ehealth-harness-bench" / "allure")
    args = parser.parse_args()
    modules = npm_install(args.cache)
    work = Path(tempfile.mkdtemp(prefix="allure-bench-"))
    results = work / "results"
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--scenario", "all", "--defect", "version-undeclared",
                          "--lang", "en", "--alluredir", str(results), "--evidence-dir", str(work / "reports")],
                         cwd=work, capture_output=True, text=True, timeout=600)
    manifest = json.loads(__import__("zipfile").ZipFile(next((work / "reports").glob("*.zip"))).read("manifest.json"))
    expected = {r["scenario"]: r["verdict"] for r in manifest["results"]}
    written = list(results.glob("*-result.json"))
    print(f"demo run: exit {run.returncode}, {len(expected)} scenarios, {len(written)} Allure results, "
          f"{len(list(results.glob('*-attachment*')))} attachments")

    t = time.monotonic()
    out2 = work / "allure2"
    gen = subprocess.run([str(modules / "allure-commandline" / "dist" / "bin" / "allure"), "generate", str(results), "-o", str(out2), "--clean"],
                         capture_output=True, text=True, timeout=300)
    cases = [json.loads(p.read_text()) for p in (out2 / "data" / "test-cases").glob("*.json")] if gen.returncode == 0 else []
    statuses: dict[str, int] = {}
    for c in cases:
        statuses[c["status"]] = statuses.get(c["status"], 0) + 1
    steps = sum(len(c.get("testStage", {}).get("steps", [])) for c in cases)
    atts = sum(len(s.get("attachments", [])) for c in cases for s in c.get("testStage", {}).get("steps", []))
    print(f"Allure 2 (allure-commandline, {time.monotonic() - t:.1f} s): exit {gen.returncode}, {len(cases)} test cases {statuses}, "
          f"{steps} steps, {atts} step attachments")

    t = time.monotonic()
    out3 = work / "allure3"
    gen3 = subprocess.run(["node", str(modules / "allure" / "cli.js"), "generate", str(results), "-o", str(out3)],
                          capture_output=True, text=True, timeout=300, cwd=work)
    stats3 = json.loads((out3 / "summary.json").read_text()).get("stats", {}) if (out3 / "summary.json").exists() else {}
    print(f"Allure 3 (allure, {time.monotonic() - t:.1f} s): exit {gen3.returncode}, summary {stats3}")
    if gen3.returncode != 0:
        print(gen3.stdout[-2000:], gen3.stderr[-2000:])
    want = {"PASS": "passed", "FAIL": "failed", "ERROR": "broken"}
    titles = {s["id"]: s["title"]["en"] for s in manifest["scenarios"]}
    by_name = {c["name"]: c["status"] for c in cases}
    wrong = {sid: (v, by_name.get(titles[sid])) for sid, v in expected.items() if by_name.get(titles[sid]) != want.get(v, "skipped")}
    print("every scenario in the Allure 2 report with its verdict's status:", "yes" if not wrong else f"no: {wrong}")
    print(f"reports kept in {work}")
    return 0 if gen.returncode == 0 and gen3.returncode == 0 and not wrong and len(cases) == len(expected) == stats3.get("total") else 1


if __name__ == "__main__":
    sys.exit(main())
