"""What the reports cost at the end of a run: the main command's bundle, its HTML report and
coverage matrix rendered again in-process (inside copy, then the copy beside it), sizes.

    python bench/reports.py [--runs 3]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from harness.evidence.bundle import Bundle
    from harness.reporting.report import Source, coverage_csv, coverage_xlsx, render_html, write_beside

    work = Path(tempfile.mkdtemp(prefix="reports-bench-"))
    t = time.monotonic()
    subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--scenario", "all", "--evidence-dir", str(work)],
                   cwd=ROOT, capture_output=True, timeout=600)
    wall = time.monotonic() - t
    bundle = next(work.glob("*.zip"))
    timings: dict[str, list[float]] = {"html": [], "csv": [], "xlsx": [], "beside (verify + all three)": []}
    sizes = {}
    for _ in range(args.runs):
        with Bundle(bundle) as b:
            source = Source.of_bundle(b)
            for name, fn in (("html", render_html), ("csv", coverage_csv), ("xlsx", coverage_xlsx)):
                t = time.perf_counter()
                sizes[name] = len(fn(source, "fr"))
                timings[name].append(time.perf_counter() - t)
        t = time.perf_counter()
        write_beside(bundle, "fr", work / "again")
        timings["beside (verify + all three)"].append(time.perf_counter() - t)
    print(f"main command: {wall:.1f} s wall, bundle {bundle.stat().st_size / 1e6:.2f} MB, {len(Bundle(bundle).manifest['artefacts'])} artefacts")
    for name, values in timings.items():
        size = f", {sizes[name] / 1e3:.0f} kB" if name in sizes else ""
        print(f"  {name:<28} median {statistics.median(values) * 1000:7.1f} ms over {len(values)}{size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
