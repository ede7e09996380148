"""Benchmark: the official CDA kit over its example documents, cold and warm.

    python bench/cda_kit.py [--kit ../shared/corpus/ans-testcontenucda] [--workers 2]

Runs `pytest --scenario cda-kit` on fixtures/targets/official-kit.toml (XSD, the four
generic schematron profiles and the volets) --cold times (default 3), each with an empty compile
cache (cold), then --warm times (default 5) with the cache filled (warm; medians reported); then through a kit server
(`harness kit serve --workers 2`: the documents of each batch shared among its two processes): one run that compiles into it, --warm runs in one process and --warm with
the workers. Reports wall time, peak resident memory of the whole process
tree (sampled every 50 ms) and of its largest process, documents per second, and the
compile time of each schematron (ours, then SaxonC's). Writes bench/results/cda_kit.json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tree_rss_kib(root: int) -> int:
    """Resident memory of a process and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid = int(entry.name)
        children.setdefault(int(fields.get("PPid", "0").strip() or 0), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def run(cache: Path, workers: int, state: Path | None = None, server: int | None = None) -> tuple[float, int, int, str]:
    """One run: wall time, peak RSS of the whole process tree, of its largest process, summary.
    With ``state``, through the kit server that file advertises; with ``server`` (its process), the
    peak counts the server's own tree too."""
    work = Path(tempfile.mkdtemp(prefix="harness-cda-bench-"))
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), HARNESS_KIT_SERVER_STATE=str(state or cache / "no-kit-server.json"))
    # As a user's installation runs it: without the plugins of our own test tools
    # (hypothesis registers one that imports all of hypothesis at the end of every session).
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
            "--scenario", "cda-kit", "--target", str(ROOT / "fixtures" / "targets" / "official-kit.toml")]
    if workers > 1:
        args += ["-n", str(workers)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_tree = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_tree
        while not stop.wait(0.05):
            peak_tree = max(peak_tree, _tree_rss_kib(proc.pid) + (_tree_rss_kib(server) if server else 0))

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    peak_process = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, peak_tree, peak_process, out.strip().splitlines()[-1]


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
            saxon.executable(entry.xslt_path, entry.documents)
        out[entry.schematron] = {"ours_s": round(ours, 3), "saxon_s": round(time.perf_counter() - t0, 3),
                                 "rules": entry.rule_count, "asserts": entry.assert_count, "error": bool(entry.error)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kit", type=Path, default=ROOT.parent / "shared" / "corpus" / "ans-testcontenucda")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cold", type=int, default=3, help="cold runs, each with an empty compile cache (the median is reported)")
    parser.add_argument("--warm", type=int, default=5, help="warm runs (the median is reported)")
    parser.add_argument("--server-workers", type=int, default=2, help="processes of the kit server (harness kit serve --workers)")
    args = parser.parse_args()
    docs = len(list((args.kit / "ExemplesCDA").glob("*.xml")))
    results = {"documents": docs, "workers": args.workers}
    for label in ["cold"] * args.cold + ["warm"] * args.warm:
        if label == "cold":
            cache = Path(tempfile.mkdtemp(prefix="harness-cda-cache-"))  # nothing compiled yet
        wall, tree, process, summary = run(cache, args.workers)
        runs = results.setdefault(label, [])
        runs.append({"wall_s": round(wall, 2), "docs_per_s": round(docs / wall, 1), "peak_rss_mib_tree": round(tree / 1024),
                     "peak_rss_mib_max_process": round(process / 1024), "pytest": summary})
        print(f"{label:<5} {wall:6.2f} s  {docs / wall:5.1f} docs/s  peak RSS whole tree {tree / 1024:.0f} MiB "
              f"(largest process {process / 1024:.0f} MiB)  [{summary}]")
    for label in ("cold", "warm"):
        walls = sorted(r["wall_s"] for r in results[label])
        results[f"{label}_median_s"] = statistics.median(walls)
        print(f"{label}: median {statistics.median(walls):.2f} s, min {walls[0]:.2f} s, max {walls[-1]:.2f} s over {len(walls)} runs")
    # through a kit server (harness kit serve): its first run compiles into it, the next ones find every stylesheet compiled
    state = cache / "kit-server.json"
    server = subprocess.Popen([sys.executable, "-m", "harness.cli", "kit", "serve", "--workers", str(args.server_workers)], env=dict(os.environ, XDG_CACHE_HOME=str(cache),
                              HARNESS_KIT_SERVER_STATE=str(state)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not state.exists() and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.05)
        for label, workers in [("server-first", 1)] + [("server-warm", 1)] * args.warm + [("server-warm-n2", args.workers)] * args.warm:
            wall, tree, process, summary = run(cache, workers, state, server.pid)
            results.setdefault(label, []).append({"wall_s": round(wall, 2), "docs_per_s": round(docs / wall, 1),
                                                  "peak_rss_mib_run_and_server": round(tree / 1024), "pytest": summary})
            print(f"{label:<14} {wall:6.2f} s  {docs / wall:5.1f} docs/s  peak RSS of the run's and the server's trees {tree / 1024:.0f} MiB  [{summary}]")
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    print(f"kit server: {out.strip().splitlines()[-1] if out.strip() else '?'}")
    for label in ("server-warm", "server-warm-n2"):
        walls = sorted(r["wall_s"] for r in results[label])
        results[f"{label}_median_s"] = statistics.median(walls)
        print(f"{label}: median {statistics.median(walls):.2f} s over {len(walls)} runs")
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
