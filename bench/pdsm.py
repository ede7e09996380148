"""Benchmark: the PDSm stand-in (FHIR document sharing) over HTTPS on loopback.

    python bench/pdsm.py [--publications 10] [--size-mb 10] [--references 10000] [--searches 50]

* ``publish``: ITI-65 transactions, each a conformant PDSm bundle (submission set,
  DocumentReference, Binary) carrying one level-1 CDA document of ``--size-mb`` megabytes
  (its PDF in base64 inside the CDA, the CDA in base64 inside the Binary): bundles per
  second, megabytes per second, and the stand-in's answer to each (every one must be stored);
* ``search``: ``--references`` DocumentReferences of one patient stored through ITI-65
  (bundles of 100 small documents), then ITI-67 searches (``patient.identifier`` and
  ``status``, plus a ``type`` or a ``creation`` filter, first page of 50): searches per second
  and the median time of one, with the number found (every search must find them all).

Writes bench/results/pdsm.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _session(standin):
    import requests

    s = requests.Session()
    s.trust_env = False
    s.verify = str(standin.credentials / "ca.pem")
    return s


def publish(publications: int, size_mb: float) -> dict:
    from harness_demo import patients
    from harness_pdsm.standin import PdsmStandIn
    from tests.mhd_support import bundle

    patients.PDF = b"%PDF-1.4\n" + os.urandom(int(size_mb * 1024 * 1024 * 3 / 4))  # the CDA weighs size_mb
    standin = PdsmStandIn(max_request=int(size_mb * 3) * 1024 * 1024, max_document=int(size_mb * 2) * 1024 * 1024).start()
    try:
        session = _session(standin)
        bodies = []
        for n in range(publications):
            doc = patients.cda_document(patients.PATIENTS[0], set(), 2000 + n, level1=True)
            bodies.append(json.dumps(bundle([doc])).encode())
        statuses, times = [], []
        for body in bodies:
            start = time.perf_counter()
            res = session.post(standin.base_url, data=body, headers={"Content-Type": "application/fhir+json"}, timeout=120)
            times.append(time.perf_counter() - start)
            statuses.append(res.status_code)
        total = sum(times)
        return {"publications": publications, "document_mb": round(len(doc) / 1024 / 1024, 2), "request_mb": round(len(bodies[0]) / 1024 / 1024, 2),
                "bundles_per_s": round(publications / total, 2), "mb_per_s": round(sum(map(len, bodies)) / 1024 / 1024 / total, 1),
                "median_s": round(statistics.median(times), 3), "all_stored": statuses == [200] * publications}
    finally:
        standin.stop()


def search(references: int, searches: int) -> dict:
    from harness_demo import patients
    from harness_pdsm.standin import PdsmStandIn
    from tests.mhd_support import bundle

    standin = PdsmStandIn(max_request=256 * 1024 * 1024).start()
    try:
        session = _session(standin)
        p = patients.PATIENTS[0]
        start = time.perf_counter()
        stored = 0
        for first in range(0, references, 100):
            docs = [patients.cda_document(p, set(), 10_000 + n) for n in range(first, min(first + 100, references))]
            res = session.post(standin.base_url, data=json.dumps(bundle(docs)).encode(), headers={"Content-Type": "application/fhir+json"}, timeout=300)
            assert res.status_code == 200, res.text[:300]
            stored += len(docs)
        load_s = time.perf_counter() - start
        patient = f"urn:oid:1.2.250.1.213.1.4.10|{p.ins}"
        queries = [{"patient.identifier": patient, "status": "current", "_count": "50"},
                   {"patient.identifier": patient, "status": "current", "type": "http://loinc.org|11488-4", "_count": "50"},
                   {"patient.identifier": patient, "status": "current", "creation": "ge2026-01-01", "_count": "50"}]
        times, totals = [], set()
        for n in range(searches):
            t = time.perf_counter()
            res = session.get(f"{standin.base_url}DocumentReference", params=queries[n % len(queries)], timeout=120)
            times.append(time.perf_counter() - t)
            totals.add(res.json()["total"])
        return {"references": stored, "load_s": round(load_s, 1), "searches": searches, "searches_per_s": round(searches / sum(times), 2),
                "median_s": round(statistics.median(times), 3), "found": sorted(totals), "all_found": totals == {stored}}
    finally:
        standin.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publications", type=int, default=10)
    parser.add_argument("--size-mb", type=float, default=10.0)
    parser.add_argument("--references", type=int, default=10_000)
    parser.add_argument("--searches", type=int, default=30)
    args = parser.parse_args()
    results = {"publish": publish(args.publications, args.size_mb), "search": search(args.references, args.searches)}
    print(json.dumps(results, indent=1))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "pdsm.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
