"""Benchmark: terminology questions for the official CDA documents, with and without the cache.

    python bench/terminology.py [--corpus ../shared/corpus] [--latency 0.02] [--workers 8]

Extracts every coded value of the official example documents (``ExemplesCDA``) with the
CDA plugin's extractor, exactly as the ``terminology-cda-*`` scenarios do, then asks the
questions of our local terminology server (loopback, serving the kit's value sets and the
NOS FHIR value sets; ``--latency`` seconds are added to each answer to stand for a distant
server) in three ways:

* no cache: every coded value's questions are sent, duplicates included;
* cache (one run): each distinct (value set, system, code) / (system, code) question once;
* disk cache (next run): the answers kept by the previous run, no request at all.

Reports the server's request counts (what reached it) and wall times. Writes
bench/results/terminology.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import Artefact, CheckContext  # noqa: E402
from harness.evidence.recorder import sha256  # noqa: E402
from harness.terminology import (CachedTerminology, FallbackTerminology, RemoteTerminology, Snapshot,  # noqa: E402
                                 SnapshotTerminology, TerminologyServer)
from harness.terminology import ask  # noqa: E402
from harness_cda.terminology import coded_values  # noqa: E402
from harness_terminology.collect import questions_of  # noqa: E402


def extract(documents: Path) -> tuple[int, list]:
    blobs = {f"doc/{p.name}": p.read_bytes() for p in sorted(documents.glob("*.xml"))}
    store = {sha256(b): b for b in blobs.values()}
    inputs = {n: Artefact(sha256(b), len(b), "application/xml", n) for n, b in blobs.items()}
    ctx = CheckContext(inputs, store.__getitem__, {}, "bench", "", {"cda": coded_values})
    values = [v for n in sorted(inputs) for v in ctx.coded_values(n)]
    return len(blobs), values


def all_questions(values) -> list:
    """Every coded value's questions, duplicates included (what a tool without cache asks)."""
    out = []
    for v in values:
        k = v.validate_key()
        if k:
            out.append(("validate-code", {"value_set": k[1], "system": k[2], "code": k[3]}))
        k = v.lookup_key()
        if k:
            out.append(("lookup", {"system": k[1], "code": k[2]}))
    return out


def timed(service, questions, workers: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda q: ask(service, *q), questions))
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--latency", type=float, default=0.02, help="seconds added to each answer (default 0.02)")
    ap.add_argument("--workers", type=int, default=8, help="questions in flight at once (the collector uses 8)")
    args = ap.parse_args()
    docs = args.corpus / "ans-testcontenucda" / "ExemplesCDA"
    if not docs.is_dir():
        print(f"corpus absent: {docs}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    n_docs, values = extract(docs)
    t_extract = time.perf_counter() - t0
    every = all_questions(values)
    distinct = questions_of(values)
    snap = SnapshotTerminology(Snapshot.load([args.corpus / "ans-testcontenucda" / "jeuxDeValeurs", args.corpus / "nos-value-sets"]))
    server = TerminologyServer(snap, latency=args.latency).start()
    results: dict = {"documents": n_docs, "coded_values": len(values), "question_instances": len(every),
                     "distinct_questions": len(distinct), "latency_s": args.latency, "workers": args.workers,
                     "extract_s": round(t_extract, 3), "runs": {}}
    try:
        def fresh(disk=None):
            remote = RemoteTerminology(server.base_url, timeout=30, retries=1)
            remote.server()  # the identity, once per run, as a live run does
            server.requests.clear()
            inner = FallbackTerminology(remote, snap, allowed=False)
            return remote, inner if disk is None else CachedTerminology(inner, server_id=server.base_url, disk=disk, ttl_seconds=3600)

        remote, service = fresh()
        wall = timed(service, every, args.workers)
        results["runs"]["no-cache"] = {"server_requests": sum(server.requests.values()), "wall_s": round(wall, 3), "by_op": dict(server.requests)}
        with tempfile.TemporaryDirectory() as tmp:
            remote, service = fresh(Path(tmp))
            wall = timed(service, every, args.workers)
            results["runs"]["cache"] = {"server_requests": sum(server.requests.values()), "wall_s": round(wall, 3),
                                        "by_op": dict(server.requests), "cache": service.stats.to_dict()}
            remote, service = fresh(Path(tmp))
            wall = timed(service, every, args.workers)
            results["runs"]["disk-cache-next-run"] = {"server_requests": sum(server.requests.values()), "wall_s": round(wall, 3),
                                                      "cache": service.stats.to_dict()}
    finally:
        server.stop()
    out = ROOT / "bench" / "results" / "terminology.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"{n_docs} documents, {len(values)} coded values, {len(every)} questions ({len(distinct)} distinct); "
          f"extraction {t_extract:.2f} s; server latency {args.latency * 1000:.0f} ms; {args.workers} in flight")
    for name, r in results["runs"].items():
        print(f"  {name:22s} requests to the server: {r['server_requests']:6d}   wall: {r['wall_s']:7.2f} s")
    print(f"written: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
