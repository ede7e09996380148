"""Benchmark: the official CDA kit over its example documents, cold and warm.

    python bench/cda_kit.py [--kit ../shared/corpus/ans-testcontenucda] [--workers 2]

Runs `pytest --scenario cda-kit` on fixtures/targets/official-kit.toml (XSD, the four
generic schematron profiles and the volets) with an empty compile cache (cold), then again
with the cache filled (warm). Reports wall time, peak
memory of the whole process tree, documents per second, and our compile time for each
schematron. Writes bench/results/cda_kit.json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cache: Path, workers: int) -> tuple[float, int, str]:
    work = Path(tempfile.mkdtemp(prefix="harness-cda-bench-"))
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--scenario", "cda-kit",
            "--target", str(ROOT / "fixtures" / "targets" / "official-kit.toml")]
    if workers > 1:
        args += ["-n", str(workers)]
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, peak_kib, proc.stdout.strip().splitlines()[-1]


def compile_times(kit_root: Path, cache: Path) -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "plugins"))
    os.environ["XDG_CACHE_HOME"] = str(cache)
    from harness_cda.engine import Saxon
    from harness_cda.kit import Kit

    kit = Kit(kit_root, "bench")
    saxon = Saxon()
    out = {}
    for sch in kit.profile_schematrons() + kit.volet_schematrons():
        t0 = time.perf_counter()
        entry = kit.compiled(sch)
        ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        if not entry.error:
            saxon.executable(entry.xslt_path)
        out[entry.schematron] = {"ours_s": round(ours, 3), "saxon_s": round(time.perf_counter() - t0, 3),
                                 "rules": entry.rule_count, "asserts": entry.assert_count, "error": bool(entry.error)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kit", type=Path, default=ROOT.parent / "shared" / "corpus" / "ans-testcontenucda")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    docs = len(list((args.kit / "ExemplesCDA").glob("*.xml")))
    cache = Path(tempfile.mkdtemp(prefix="harness-cda-cache-"))
    results = {"documents": docs, "workers": args.workers}
    for label in ("cold", "warm"):
        wall, peak, summary = run(cache, args.workers)
        results[label] = {"wall_s": round(wall, 2), "docs_per_s": round(docs / wall, 1), "peak_rss_mib_max_process": round(peak / 1024), "pytest": summary}
        print(f"{label:<5} {wall:6.2f} s  {docs / wall:5.1f} docs/s  peak RSS (largest process) {peak / 1024:.0f} MiB  [{summary}]")
    times = compile_times(args.kit, Path(tempfile.mkdtemp(prefix="harness-cda-cache-")))
    results["compile"] = times
    slow = sorted(times.items(), key=lambda kv: -(kv[1]["ours_s"] + kv[1]["saxon_s"]))[:6]
    print("compile time per schematron (ours + Saxon), slowest first:")
    for name, t in slow:
        print(f"  {name:<70} {t['ours_s']:.2f} + {t['saxon_s']:.2f} s  ({t['rules']} rules, {t['asserts']} asserts)")
    total = sum(t["ours_s"] + t["saxon_s"] for t in times.values())
    print(f"  all {len(times)} schematrons: {total:.1f} s; not compilable: {[n for n, t in times.items() if t['error']]}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "cda_kit.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
