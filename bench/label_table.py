"""Benchmark: a transcoding table of a million rows through the five label-transcoding scenarios.

    python bench/label_table.py [--rows 1000000] [--xlsx] [--hostile]

Writes a vendor folder: a terminology snapshot (a CISP-2 and a CIM-10 made for the bench, each
held whole, every code of the right shape; a concept map of every CISP-2 code), and a table of
``--rows`` rows cycling through the concept map's pairs (CSV, 60 MB for a million rows; with
``--xlsx`` the same rows as a workbook written by openpyxl). Runs ``pytest --scenario
label-transcoding-* --offline`` on it and then ``harness verify --replay`` on its bundle; reports
wall time, peak resident memory of the run's process tree (sampled every 50 ms), the bundle's
size, and the verdicts. ``--hostile``: a table whose every row carries another target code (a
million distinct codes): the questions stop at the cap, the target scenario is INCONCLUSIVE.
Writes bench/results/label_table.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from cda_kit import _tree_rss_kib  # noqa: E402

CISP = "https://mos.esante.gouv.fr/NOS/TRE_R313-CISP2/FHIR/TRE-R313-CISP2"
CIM = "https://mos.esante.gouv.fr/NOS/TRE_R310-CIM10/FHIR/TRE-R310-CIM10"
MAP = "http://bench.example/fhir/ConceptMap/cisp2-cim10"
CHAPTERS = "ABDFHKLNPRSTUWXYZ"


def vendor(folder: Path, rows: int, xlsx: bool, hostile: bool) -> Path:
    cisp = [f"{ch}{n:02d}" for ch in CHAPTERS for n in range(1, 100)]  # 1,683 codes
    cim = [f"{chr(65 + i // 100 % 26)}{i % 100:02d}.{j}" for i in range(2600) for j in range(4)]  # 10,400 codes
    pairs = [(c, cim[(i * 7) % len(cim)]) for i, c in enumerate(cisp)]
    snap = folder / "snap"
    snap.mkdir(parents=True)
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in [
        {"resourceType": "CodeSystem", "url": CISP, "status": "active", "content": "complete", "concept": [{"code": c} for c in cisp]},
        {"resourceType": "CodeSystem", "url": CIM, "status": "active", "content": "complete", "concept": [{"code": c} for c in cim]},
        {"resourceType": "ConceptMap", "url": MAP, "status": "active", "group": [{"source": CISP, "target": CIM, "element": [
            {"code": s, "target": [{"code": t, "equivalence": "equivalent"}]} for s, t in pairs]}]}]]}
    (snap / "bench.json").write_text(json.dumps(bundle), encoding="utf-8")
    header = ["Code CISP-2", "Libellé CISP-2", "Code CIM-10", "Libellé CIM-10"]

    def row(i: int) -> list[str]:
        s, t = pairs[i % len(pairs)]
        if hostile:
            t = f"{chr(65 + i // 100_000 % 26)}{i // 1000 % 100:02d}.{i % 1000:03d}"  # a million distinct codes of the right shape
        return [s, f"Rubrique {s}, ligne {i}", t, f"Libellé de {t}, ligne {i}"]

    if xlsx:
        import openpyxl

        wb = openpyxl.Workbook(write_only=True)
        ws = wb.create_sheet("Transcodage")
        ws.append(header)
        for i in range(rows):
            ws.append(row(i))
        table = folder / "transcodage.xlsx"
        wb.save(table)
    else:
        table = folder / "transcodage.csv"
        with table.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, delimiter=";")
            w.writerow(header)
            for i in range(rows):
                w.writerow(row(i))
    (folder / "vendor.toml").write_text(f"""[product]
id = "fr.example.bench"
name = "Bench"
version = "1.0.0"

[transcoding]
file = "{table.name}"
source_column = "Code CISP-2"
target_column = "Code CIM-10"
concept_map = "{MAP}"

[terminology]
snapshot = ["snap"]
builtin_snapshot = false
""", encoding="utf-8")
    return table


def timed(args: list[str], cwd: Path) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.05):
            peak = max(peak, _tree_rss_kib(proc.pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, _ = proc.communicate()
    stop.set()
    sampler.join()
    return time.perf_counter() - t0, peak, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--xlsx", action="store_true", help="the table as an XLSX workbook (openpyxl) instead of CSV")
    parser.add_argument("--hostile", action="store_true", help="a distinct target code on every row")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="harness-label-bench-"))
    t0 = time.perf_counter()
    table = vendor(folder, args.rows, args.xlsx, args.hostile)
    made = time.perf_counter() - t0
    print(f"table: {table.name}, {args.rows:,} rows, {table.stat().st_size / 1e6:.1f} MB, written in {made:.1f} s")
    scenarios = [a for s in ("file", "source", "target", "coverage", "map") for a in ("--scenario", f"label-transcoding-{s}")]
    wall, peak, out = timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", *scenarios,
                             "--target", str(folder / "vendor.toml"), "--offline", "--lang", "en"], folder)
    bundle = max(folder.glob("reports/*.zip"), key=os.path.getmtime)
    with zipfile.ZipFile(bundle) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    verdicts = {r: i["verdict"] for r, i in manifest["requirements"].items()}
    print(f"run: {wall:.1f} s, peak RSS of the run's tree {peak / 1024:.0f} MiB, bundle {bundle.stat().st_size / 1e6:.1f} MB")
    print(f"verdicts: {verdicts}")
    rwall, rpeak, rout = timed([sys.executable, "-m", "harness.cli", "verify", "--replay", str(bundle)], folder)
    print(f"verify --replay: {rwall:.1f} s, peak {rpeak / 1024:.0f} MiB: {rout.strip().splitlines()[-1]}")
    results = {"rows": args.rows, "format": "xlsx" if args.xlsx else "csv", "hostile": args.hostile, "table_mb": round(table.stat().st_size / 1e6, 1),
               "written_s": round(made, 1), "run_s": round(wall, 1), "peak_rss_mib": round(peak / 1024), "bundle_mb": round(bundle.stat().st_size / 1e6, 1),
               "verdicts": verdicts, "replay_s": round(rwall, 1), "replay_peak_rss_mib": round(rpeak / 1024), "replay": rout.strip().splitlines()[-1]}
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    name = f"label_table{'_xlsx' if args.xlsx else ''}{'_hostile' if args.hostile else ''}.json"
    (out_dir / name).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
