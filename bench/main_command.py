"""Benchmark: wall time of the main command and size of the bundle it writes.

    python bench/main_command.py [--runs N]

Runs `pytest --scenario all` against the embedded demo in a fresh temporary folder, N
times per configuration (serial with and without the headless-browser screenshot, and
under pytest-xdist with 2 workers), then `harness verify --replay` on one bundle.
Prints one line per configuration and writes bench/results/main_command.json.
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
from pathlib import Path

from harness_version.browser import distribution_browser as find_browser

CONFIGS = {
    "serial": ([], {}),
    "serial-no-screenshot": ([], {"HARNESS_BROWSER": "none"}),
    "xdist-2": (["-n", "2"], {}),
}


def run_once(extra: list[str], env_extra: dict[str, str]) -> tuple[float, int, Path]:
    work = Path(tempfile.mkdtemp(prefix="harness-bench-"))
    env = dict(os.environ, **env_extra)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--scenario", "all", *extra],
                          cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"main command failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    bundle = next((work / "reports").glob("*.zip"))
    return wall, bundle.stat().st_size, bundle


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = {"browser": find_browser(), "runs": args.runs, "configs": {}}
    last_bundle = None
    for name, (extra, env_extra) in CONFIGS.items():
        if name == "serial-no-screenshot" and not results["browser"]:
            continue
        walls, sizes = [], []
        for _ in range(args.runs):
            wall, size, last_bundle = run_once(extra, env_extra)
            walls.append(wall)
            sizes.append(size)
        results["configs"][name] = {
            "wall_s_median": round(statistics.median(walls), 3),
            "wall_s_min": round(min(walls), 3),
            "wall_s_max": round(max(walls), 3),
            "bundle_bytes_median": int(statistics.median(sizes)),
        }
        c = results["configs"][name]
        print(f"{name:<22} wall median {c['wall_s_median']:.2f} s (min {c['wall_s_min']:.2f}, max {c['wall_s_max']:.2f}); bundle {c['bundle_bytes_median'] / 1024:.1f} KiB")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness.cli", "verify", "--replay", str(last_bundle)], check=True, capture_output=True)
    results["verify_replay_s"] = round(time.perf_counter() - t0, 3)
    print(f"{'verify --replay':<22} {results['verify_replay_s']:.2f} s")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "main_command.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
