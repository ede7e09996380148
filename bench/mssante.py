"""Benchmark: MSSanté archives checked a piece at a time, and mails through the simulator.

    python bench/mssante.py [--size-mb 100] [--mails 200] [--rounds 3]

* ``archive``: an IHE XDM archive carrying one document of ``--size-mb`` megabytes (random
  bytes: the archive is as large as the document) is recorded in an evidence store and
  judged by the MSSanté archive check exactly as a run does (layout, listing, SHA-1 and size
  of every byte), in a child process whose peak resident memory is measured against its
  memory once everything was imported; once through ``ctx.open`` (streamed: the run's
  path) and once with the whole artefact loaded in memory (what ``ctx.read`` would do), to
  show what streaming saves;
* ``mails``: the demo vendor's conformant message (a CDA document in its XDM archive and a
  PDF copy) sent ``--mails`` times to the mail simulator, over STARTTLS with a login, one
  connection per message as the demo sends them, then all on one connection: messages per
  second (median of ``--rounds``), every message accepted.

Writes bench/results/mssante.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_archive(folder: Path, size_mb: int) -> Path:
    """README.TXT, INDEX.HTM, IHE_XDM/SUBSET01/METADATA.XML and a document of size_mb MB."""
    from lxml import etree

    from harness_mssante.compose import metadata as _metadata
    from harness_demo.patients import PATIENTS, cda_document

    path = folder / "IHE_XDM.ZIP"
    sha1, size = hashlib.sha1(), 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        zf.writestr("README.TXT", "bench\r\n")
        zf.writestr("INDEX.HTM", "<html></html>")
        with zf.open("IHE_XDM/SUBSET01/DOC0001.XML", "w", force_zip64=True) as fh:
            for _ in range(size_mb):
                chunk = os.urandom(1024 * 1024)
                sha1.update(chunk)
                size += len(chunk)
                fh.write(chunk)
        meta = _metadata(cda_document(PATIENTS[0], set(), 201), set())
        root = etree.fromstring(meta)
        for slot in root.iter("{*}Slot"):
            if slot.get("name") in ("hash", "size"):
                slot[0][0].text = sha1.hexdigest() if slot.get("name") == "hash" else str(size)
        zf.writestr("IHE_XDM/SUBSET01/METADATA.XML", etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    return path


def _hwm_kib() -> int:
    """This process's peak resident memory (VmHWM): unlike ru_maxrss, which Linux carries
    over an exec from the parent that forked, it starts afresh in a spawned child."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _judge(store_dir: str, digest: str, size: int, streamed: bool, out) -> None:
    from harness import Artefact
    from harness.running.checking import evaluate
    from harness.evidence.recorder import ObjectStore, canonical_json
    from harness_mssante import checks
    from tests.checking import TARGET, registry, scenario

    store = ObjectStore(Path(store_dir))
    session = {"source": "files", "folder": "-", "connections": [], "messages": [
        {"n": 1, "input": "mss-raw/001", "outcome": "file", "complete": True, "read": 0, "kept": 0,
         "archives": [{"input": "mss-xdm/001-1", "part": "2", "metadata": [], "documents": []}]}]}
    s = store.put(canonical_json(session))
    inputs = {"mss-xdm/001-1": Artefact(digest, size, "application/zip", "x"), "mss.session": Artefact(s, 1, "application/json", "s")}
    baseline = _hwm_kib()
    start = time.perf_counter()
    verdict, _, findings = evaluate(scenario(), inputs, store.get, TARGET, registry(c=checks.check_archive), [], "",
                                    store.open if streamed else None)
    seconds = time.perf_counter() - start
    peak = _hwm_kib()
    out.put({"streamed": streamed, "verdict": verdict.value, "findings": [f.rule for f in findings], "seconds": round(seconds, 2),
             "mb_per_second": round(size / 1e6 / seconds, 1), "rss_after_imports_mib": round(baseline / 1024, 1),
             "rss_peak_mib": round(peak / 1024, 1), "rss_growth_mib": round((peak - baseline) / 1024, 1)})


def archive(size_mb: int) -> dict:
    from harness.evidence.recorder import ObjectStore

    with tempfile.TemporaryDirectory() as tmp:
        path = build_archive(Path(tmp), size_mb)
        size = path.stat().st_size
        store = ObjectStore(Path(tmp) / "store")
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(1024 * 1024):
                digest.update(chunk)
        digest = digest.hexdigest()
        os.replace(path, store.path(digest))
        runs = []
        for streamed in (True, False):
            spawn = multiprocessing.get_context("spawn")
            queue = spawn.Queue()
            proc = spawn.Process(target=_judge, args=(str(store.root), digest, size, streamed, queue))
            proc.start()
            runs.append(queue.get(timeout=600))
            proc.join()
    return {"document_mb": size_mb, "archive_mib": round(size / 2**20, 1), "runs": runs}


def mails(count: int, rounds: int) -> dict:
    import smtplib
    import ssl

    from harness_demo.mssante_client import LOGIN, PASSWORD, RECIPIENT, SENDER, message
    from harness_mssante.simulator import MailSimulator

    raw = message(set())
    sim = MailSimulator().start()
    ctx = ssl.create_default_context(cafile=str(sim.certificate))
    out = {"message_bytes": len(raw), "mails": count, "rounds": rounds}
    try:
        for mode in ("connection_per_message", "one_connection"):
            rates = []
            for _ in range(rounds):
                first = len(sim.journal.messages)
                start = time.perf_counter()
                smtp = None
                for n in range(count):
                    if smtp is None:
                        smtp = smtplib.SMTP("127.0.0.1", sim.port, timeout=20)
                        smtp.starttls(context=ctx)
                        smtp.login(LOGIN, PASSWORD)
                    smtp.sendmail(SENDER, [RECIPIENT], raw)
                    if mode == "connection_per_message":
                        smtp.quit()
                        smtp = None
                if smtp is not None:
                    smtp.quit()
                rates.append(count / (time.perf_counter() - start))
                got = sim.journal.messages[first:]
                assert len(got) == count and all(m.outcome == "accepted" and m.raw == raw for m in got)
            out[mode] = {"messages_per_second_median": round(statistics.median(rates), 1), "all": [round(r, 1) for r in rates]}
    finally:
        sim.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--mails", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = {"archive": archive(args.size_mb), "mails": mails(args.mails, args.rounds)}
    out = ROOT / "bench" / "results" / "mssante.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
