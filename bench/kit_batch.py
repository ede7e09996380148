"""Benchmark: ``harness kit batch`` over an archive of 10,000 documents.

    python bench/kit_batch.py [--documents 10000] [--workers 2] [--kit ../shared/corpus/ans-testcontenucda]

First the kit's 94 official examples, with 2 workers: cold (an empty cache), warm, and through a
warm kit server (``harness kit serve --workers 2``). Then builds the archive from the examples repeated with varied ids (each copy's
ClinicalDocument/id and setId extension suffixed with its copy number; file names prefixed by
it), then:

1. one uninterrupted batch on a local pool of ``--workers`` processes: documents per second and
   peak memory (the whole process tree, and the command's own process) for each thousand
   documents, from the results lines' timestamps and a 0.5 s memory sampler; the time to seal,
   the bundle's size per thousand documents;
2. the same batch killed (SIGKILL to its process group) once half the documents are judged,
   then run again: how many were judged again, and whether the bundle is the same as (1)'s;
3. the same batch on a local Dask cluster (``dask scheduler`` + ``dask worker --nworkers
   WORKERS --nthreads 1``, started here): identical results, and its time against (1)'s.

Writes bench/results/kit_batch.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from cda_kit import _tree_rss_kib  # noqa: E402

V3 = "{urn:hl7-org:v3}"
SCENARIOS = ["cda-kit-xsd", "cda-kit-header", "cda-kit-ihe", "cda-kit-content-models", "cda-kit-ans-models", "cda-kit-volets"]


def build(examples: Path, folder: Path, count: int) -> int:
    """``count`` documents: the examples repeated, each copy's ids made its own."""
    sources = sorted(examples.glob("*.xml"))
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    trees = []
    for src in sources:
        trees.append((src.name, etree.parse(str(src), parser)))
    folder.mkdir(parents=True, exist_ok=True)
    made = 0
    copy = 0
    while made < count:
        for name, tree in trees:
            if made >= count:
                break
            root = tree.getroot()
            saved = []
            for tag in ("id", "setId"):
                el = root.find(f"{V3}{tag}")
                if el is not None:
                    saved.append((el, el.get("extension")))
                    el.set("extension", f"{el.get('extension') or 'x'}-{copy:05d}")
            (folder / f"{copy:05d}-{name}").write_bytes(etree.tostring(tree, xml_declaration=True, encoding="UTF-8"))
            for el, old in saved:
                if old is None:
                    del el.attrib["extension"]
                else:
                    el.set("extension", old)
            made += 1
        copy += 1
    return made


class Sampler:
    """Resident memory of a process tree and of its root, every 0.5 s, with the time."""

    def __init__(self, pid: int) -> None:
        self.pid, self.samples, self._stop = pid, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                own = int(next(line for line in Path(f"/proc/{self.pid}/status").read_text().splitlines() if line.startswith("VmRSS")).split()[1])
            except (OSError, StopIteration):
                own = 0
            self.samples.append((time.monotonic(), _tree_rss_kib(self.pid), own))

    def stop(self) -> list:
        self._stop.set()
        self._thread.join()
        return self.samples


def batch(folder: Path, evidence: Path, env: dict, *extra: str, kill_at: int | None = None) -> dict:
    args = [sys.executable, "-m", "harness.cli", "kit", "batch", str(folder), "--evidence-dir", str(evidence), *extra]
    started = time.monotonic()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    sampler = Sampler(proc.pid)
    stamps: list[float] = []  # when each results line appeared (monotonic)
    seen = None  # lines when first seen (a resumed run finds some already)
    results, offset = None, 0
    while proc.poll() is None:
        if results is None:
            found = list(evidence.glob(".batch-*/results.jsonl"))
            results = found[0] if found else None
        if results is not None:
            try:  # only what was appended since the last look: reading the whole file again would cost O(n) each time
                with results.open("rb") as fh:
                    fh.seek(offset)
                    new = fh.read()
            except OSError:
                new = b""
            offset += len(new)
            lines = new.count(b"\n")
            if seen is None:
                seen = lines
            else:
                stamps += [time.monotonic()] * lines
                seen += lines
            if kill_at is not None and seen >= kill_at:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
        time.sleep(0.2)
    out, err = proc.communicate()
    ended = time.monotonic()
    samples = sampler.stop()
    return {"rc": proc.returncode, "stdout": out, "stderr": err[-3000:], "started": started, "ended": ended, "stamps": stamps,
            "samples": samples, "judged_seen": seen or 0}


def by_thousands(run: dict, total: int) -> list[dict]:
    rows = []
    stamps, samples = run["stamps"], run["samples"]
    start = run["started"]
    for k in range(0, len(stamps), 1000):
        chunk = stamps[k:k + 1000]
        t0 = stamps[k - 1] if k else start
        t1 = chunk[-1]
        window = [s for s in samples if t0 <= s[0] <= t1] or [min(samples, key=lambda s: abs(s[0] - t1))]
        rows.append({"documents": f"{k + 1}-{k + len(chunk)}", "seconds": round(t1 - t0, 1), "docs_per_s": round(len(chunk) / max(t1 - t0, 1e-6), 1),
                     "peak_tree_mib": round(max(s[1] for s in window) / 1024), "peak_command_mib": round(max(s[2] for s in window) / 1024)})
    return rows


def record(bundle: Path) -> dict:
    with zipfile.ZipFile(bundle) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        findings = {s: json.loads(zf.read(f"findings/{s}.json")) for s in SCENARIOS}
    return {"requirements": manifest["requirements"], "results": sorted(manifest["results"], key=lambda r: r["scenario"]),
            "artefacts": manifest["artefacts"], "findings": findings}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kit", type=Path, default=ROOT.parent / "shared" / "corpus" / "ans-testcontenucda")
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma-separated: examples, resume, dask")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="harness-kit-batch-bench-"))
    folder = work / "archive"
    t0 = time.perf_counter()
    n = build(args.kit / "ExemplesCDA", folder, args.documents)
    size = sum(p.stat().st_size for p in folder.iterdir())
    print(f"archive: {n} documents, {size / 1e6:.0f} MB, built in {time.perf_counter() - t0:.1f} s", flush=True)
    env = dict(os.environ, XDG_CACHE_HOME=str(work / "cache"), HARNESS_CDA_KIT=str(args.kit),
               HARNESS_KIT_SERVER_STATE=str(work / "no-kit-server.json"))
    results: dict = {"documents": n, "archive_mb": round(size / 1e6), "workers": args.workers}

    # 0. the 94 official examples, with 2 workers: cold (an empty cache), warm (the stylesheets
    # compiled to XSLT in the cache, Saxon compiling them again in each new worker), and through
    # a warm kit server of --workers processes (nothing compiled at all)
    if "examples" not in skip:
        examples = args.kit / "ExemplesCDA"
        ex_env = dict(env, XDG_CACHE_HOME=str(work / "ex-cache"))
        timing: dict = {}
        for label in ["cold"] + ["warm"] * 3:
            run = batch(examples, work / f"ex-{label}-{len(timing.get(label, []))}", ex_env, "--workers", str(args.workers), "--no-server")
            timing.setdefault(label, []).append(round(run["ended"] - run["started"], 2))
        state = work / "kit-server.json"
        served_env = dict(ex_env, HARNESS_KIT_SERVER_STATE=str(state))
        server = subprocess.Popen([sys.executable, "-m", "harness.cli", "kit", "serve", "--workers", str(args.workers)], env=served_env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            server.stdout.readline()
            for label in ["server-first"] + ["server-warm"] * 3:
                run = batch(examples, work / f"ex-{label}-{len(timing.get(label, []))}", served_env)
                timing.setdefault(label, []).append(round(run["ended"] - run["started"], 2))
                timing.setdefault(label + "-peak-tree-mib", []).append(round(max((x[1] for x in run["samples"]), default=0) / 1024))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        results["examples"] = timing
        print("94 examples, harness kit batch, 2 workers: " + "; ".join(f"{k} {v}" for k, v in timing.items()), flush=True)

    # 1. uninterrupted
    full = batch(folder, work / "full", env, "--workers", str(args.workers), "--no-server")
    bundle = next((work / "full").glob("*.zip"))
    judged_end = full["stamps"][-1] if full["stamps"] else full["ended"]
    rows = by_thousands(full, n)
    results["local"] = {"rc": full["rc"], "wall_s": round(full["ended"] - full["started"], 1), "seal_s": round(full["ended"] - judged_end, 1),
                        "bundle_mb": round(bundle.stat().st_size / 1e6, 1), "bundle_mb_per_1000": round(bundle.stat().st_size / 1e6 / n * 1000, 2),
                        "by_thousands": rows, "stdout": full["stdout"]}
    print(f"local pool, {args.workers} workers: {results['local']['wall_s']} s in all (sealing {results['local']['seal_s']} s), "
          f"bundle {results['local']['bundle_mb']} MB ({results['local']['bundle_mb_per_1000']} MB per 1000 documents)")
    print(f"{'documents':>13} {'s':>7} {'docs/s':>7} {'tree MiB':>9} {'command MiB':>12}")
    for row in rows:
        print(f"{row['documents']:>13} {row['seconds']:>7} {row['docs_per_s']:>7} {row['peak_tree_mib']:>9} {row['peak_command_mib']:>12}")
    seal_samples = [s for s in full["samples"] if s[0] >= judged_end]
    if seal_samples:
        results["local"]["seal_peak_tree_mib"] = round(max(s[1] for s in seal_samples) / 1024)
        print(f"while sealing: peak tree {results['local']['seal_peak_tree_mib']} MiB")
    print(full["stdout"].strip(), flush=True)
    reference = record(bundle)

    # 2. killed half-way, resumed
    if "resume" not in skip:
        killed = batch(folder, work / "resumed", env, "--workers", str(args.workers), "--no-server", kill_at=n // 2)
        resumed = batch(folder, work / "resumed", env, "--workers", str(args.workers), "--no-server")
        again = next((work / "resumed").glob("*.zip"))
        same = record(again) == reference
        said = [line for line in resumed["stderr"].splitlines() if "déjà jugés" in line]
        new = re.search(r"\((\d+) jugés par cette exécution", resumed["stdout"])
        results["resume"] = {"killed_after": killed["judged_seen"], "resumed_said": said, "resumed_wall_s": round(resumed["ended"] - resumed["started"], 1),
                             "judged_by_resume": int(new.group(1)) if new else None, "same_bundle_record": same, "stdout": resumed["stdout"]}
        print(f"killed after {killed['judged_seen']} documents; resumed: {said}; judged by the resumed run {results['resume']['judged_by_resume']}; "
              f"{results['resume']['resumed_wall_s']} s; bundle record identical to the uninterrupted run's: {same}", flush=True)

    # 3. Dask
    if "dask" not in skip:
        scheduler_file = work / "scheduler.json"
        procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
                                   "--scheduler-file", str(scheduler_file)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
        try:
            while not scheduler_file.exists():
                time.sleep(0.1)
            address = json.loads(scheduler_file.read_text())["address"]
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", str(args.workers), "--nthreads", "1"],
                                          env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
            from distributed import Client

            with Client(address, timeout=30) as client:
                client.wait_for_workers(args.workers, timeout=120)
            dask = batch(folder, work / "dask", env, "--dask", address)
            dbundle = next((work / "dask").glob("*.zip"))
            same = record(dbundle) == reference
            wall = round(dask["ended"] - dask["started"], 1)
            results["dask"] = {"wall_s": wall, "same_bundle_record": same, "by_thousands": by_thousands(dask, n),
                               "overhead_vs_local": round(wall / results["local"]["wall_s"] - 1, 3)}
            print(f"Dask, {args.workers} workers: {wall} s in all ({results['dask']['overhead_vs_local'] * 100:+.1f} % against the local pool); "
                  f"bundle record identical: {same}", flush=True)
        finally:
            for proc in reversed(procs):
                os.killpg(proc.pid, signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=30)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "kit_batch.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
