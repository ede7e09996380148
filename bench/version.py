"""Benchmark: time of the version scenarios on the demo vendor, with and without a browser.

    python bench/version.py [--runs 5]

For each configuration, ``pytest --scenario version`` (the six version-number rules; the
channel rule also gathers the documents, the DMP submission and the MSSanté message) and
``pytest --scenario version-visible-in-ui`` (the UI rule alone) run N times in a fresh folder
against the embedded demo; the median and minimum wall times are kept, with the verdicts of
the last run:

* ``browser``: Chromium driven by Playwright renders the page and the about page one click
  away, with screenshots (the distribution's Chromium, or HARNESS_BROWSER);
* ``browser-image``: the same, on the demo whose version is drawn in an image, read by
  Tesseract OCR (skipped when Tesseract is absent);
* ``no-browser``: ``HARNESS_BROWSER=none``: the rendering records that no browser was found,
  visibility is INCONCLUSIVE.

Then ``harness verify --replay`` of one browser bundle, with ``HARNESS_BROWSER=none``: the
rendered facts are in the bundle, replay needs no browser. Writes bench/results/version.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from harness_version.browser import find_browser
from harness_version.ocr import engine

CONFIGS = {
    "browser": ([], {}),
    "browser-image": (["--defect", "version-in-image"], {}),
    "no-browser": ([], {"HARNESS_BROWSER": "none"}),
}
SELECTIONS = ("version", "version-visible-in-ui")


def run_once(selection: str, extra: list[str], env_extra: dict[str, str]) -> tuple[float, Path, dict]:
    work = Path(tempfile.mkdtemp(prefix="harness-bench-version-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")} | env_extra
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--scenario", selection, *extra],
                          cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    bundle = next((work / "reports").glob("*.zip"), None)
    if bundle is None:
        raise SystemExit(f"no bundle ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    with zipfile.ZipFile(bundle) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    return wall, bundle, {req: v["verdict"] for req, v in sorted(manifest["requirements"].items())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results: dict = {"browser": find_browser(), "ocr": engine(), "runs": args.runs, "configs": {}}
    replayable = None
    for name, (extra, env_extra) in CONFIGS.items():
        if name.startswith("browser") and not results["browser"]:
            continue
        if name == "browser-image" and not results["ocr"]:
            continue
        for selection in SELECTIONS:
            walls = []
            for _ in range(args.runs):
                wall, bundle, verdicts = run_once(selection, extra, env_extra)
                walls.append(wall)
            if name == "browser" and selection == "version":
                replayable = bundle
            key = f"{name} --scenario {selection}"
            results["configs"][key] = {"wall_s_median": round(statistics.median(walls), 3), "wall_s_min": round(min(walls), 3),
                                       "verdicts": verdicts}
            print(f"{key:<50} median {statistics.median(walls):6.2f} s  min {min(walls):6.2f} s  {verdicts}", flush=True)
    if replayable is not None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")} | {"HARNESS_BROWSER": "none"}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())", "verify", "--replay", str(replayable)], env=env, capture_output=True, text=True)
        results["replay_without_browser"] = {"wall_s": round(time.perf_counter() - t0, 3), "exit": proc.returncode}
        print(f"harness verify --replay (no browser): {results['replay_without_browser']}")
    out = Path(__file__).parent / "results" / "version.json"
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
