"""Benchmark: the DMP plugin's built-in CDA checks, and submissions through the DMP simulator.

    python bench/dmp.py [--corpus ../shared/corpus] [--rounds 5] [--submissions 20] [--size-mb 10]

* ``builtin``: the built-in rules (header, body with the level-1 model, INS identifiers)
  over the official example documents (``ExemplesCDA``, 94), parsing included, as the
  checks run them: documents per second (median of ``--rounds`` passes) and the peak
  resident memory of the process that ran them (measured in a child process, against its
  resident memory once everything was imported);
* ``simulator``: provide-and-register requests (ITI-41, SOAP 1.2 with MTOM/XOP, a VIHF
  and a client certificate over TLS) sent by the demo vendor's DMP client to the
  simulator, each carrying a level-1 document of ``--size-mb`` megabytes: submissions per
  second, and the simulator's answer to each.

Writes bench/results/dmp.json.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _builtin(folder: str, rounds: int, out) -> None:
    from harness_cda.document import read_cda
    from harness_cda import rules as cda_rules

    files = [(p.name, p.read_bytes()) for p in sorted(Path(folder).glob("*.xml"))]
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, failing = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        failing = 0
        for name, data in files:
            doc = read_cda(data, name)
            base = doc.tree.getpath(doc.root) if doc.embedded else "/ClinicalDocument"
            found = (cda_rules.check_header(doc.root, base) + cda_rules.check_body(doc.root, base)
                     + cda_rules.check_ins(doc.tree, doc.root).problems)
            failing += any(p.severity.fails for p in found)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    median = statistics.median(times)
    out.put({"documents": len(files), "bytes": sum(len(d) for _, d in files), "rounds": rounds,
             "seconds_median": round(median, 4), "seconds_min": round(min(times), 4),
             "documents_per_second": round(len(files) / median, 1), "failing_documents": failing,
             "rss_after_imports_mib": round(baseline / 1024, 1), "rss_peak_mib": round(peak / 1024, 1)})


def builtin(corpus: Path, rounds: int) -> dict:
    spawn = multiprocessing.get_context("spawn")
    queue = spawn.Queue()
    proc = spawn.Process(target=_builtin, args=(str(corpus / "ans-testcontenucda" / "ExemplesCDA"), rounds, queue))
    proc.start()
    result = queue.get(timeout=600)
    proc.join(60)
    return result


def simulator(submissions: int, size_mb: float) -> dict:
    """Provide-and-register requests, each with one level-1 document of ``size_mb`` MB."""
    import os

    from lxml import etree

    from harness_demo import patients
    from harness_demo.dmp_client import DmpClient
    from harness_dmp.simulator import DmpSimulator

    # a PDF body large enough for the document to weigh size_mb once base64-encoded
    patients.PDF = b"%PDF-1.4\n" + os.urandom(int(size_mb * 1024 * 1024 * 3 / 4))
    sim = DmpSimulator(max_request=int(size_mb * 3) * 1024 * 1024, max_document=int(size_mb * 2) * 1024 * 1024).start()
    try:
        client = DmpClient(sim.base_url, sim.credentials, set(), "3.2.1")
        docs = [patients.cda_document(patients.PATIENTS[0], set(), 1000 + n, level1=True) for n in range(submissions)]
        outcomes, times = [], []
        for n, doc in enumerate(docs):
            start = time.perf_counter()
            answer = client._provide([("Document01", doc)])
            times.append(time.perf_counter() - start)
            outcomes.append(etree.QName(answer).localname + ":" + (answer.get("status") or "").rsplit(":", 1)[-1])
        request_bytes = [len(e.request) for e in sim.journal.exchanges]
    finally:
        sim.stop()
    total = sum(times)
    return {"submissions": submissions, "document_mb": round(len(docs[0]) / 1024 / 1024, 2),
            "request_mb_median": round(statistics.median(request_bytes) / 1024 / 1024, 2),
            "seconds_total": round(total, 2), "submissions_per_second": round(submissions / total, 2),
            "seconds_per_submission_median": round(statistics.median(times), 3),
            "outcomes": dict(__import__("collections").Counter(outcomes))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--submissions", type=int, default=20)
    parser.add_argument("--size-mb", type=float, default=10.0)
    args = parser.parse_args()
    results = {"builtin": builtin(args.corpus, args.rounds), "simulator": simulator(args.submissions, args.size_mb)}
    print(json.dumps(results, indent=1))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "dmp.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
