"""Hostile XDM archives, judged by the MSSanté archive check exactly as a run does (the
archive read from the evidence store a piece at a time): each gives a finding, never a
crash, never a file written anywhere, with bounded memory."""
import io
import json
import os
import stat
import tracemalloc
import zipfile

import pytest

from harness import Artefact
from harness.running.checking import evaluate
from harness.evidence.recorder import ObjectStore, canonical_json
from harness_demo.mssante_client import message
from harness_mssante import checks, mail
from tests.checking import TARGET, registry, scenario


def good_archive() -> bytes:
    reading = mail.read(message(set()))
    return reading.xdm[0].payload


def judge(tmp_path, data: bytes, fn=checks.check_archive):
    store = ObjectStore(tmp_path / "store")
    digest = store.put(data)
    session = {"source": "files", "folder": "-", "connections": [], "messages": [
        {"n": 1, "input": "mss-raw/001", "outcome": "file", "complete": True, "read": 0, "kept": 0,
         "archives": [{"input": "mss-xdm/001-1", "part": "2", "metadata": [], "documents": []}]}]}
    s = store.put(canonical_json(session))
    inputs = {"mss-xdm/001-1": Artefact(digest, len(data), "application/zip", "x"), "mss.session": Artefact(s, 1, "application/json", "s")}
    verdict, steps, findings = evaluate(scenario(), inputs, store.get, TARGET, registry(c=fn), [], "", store.open)
    return verdict.value, {f.rule for f in findings}, findings


def zip_of(entries, *, mode=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", mode) as zf:
        for name, data in entries:
            if isinstance(name, zipfile.ZipInfo):
                zf.writestr(name, data)
            else:
                zf.writestr(name, data)
    return buf.getvalue()


def with_entries(*extra) -> bytes:
    """The demo's conformant archive with more entries."""
    src = zipfile.ZipFile(io.BytesIO(good_archive()))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name we add on purpose
        return zip_of([(i.filename, src.read(i)) for i in src.infolist()] + list(extra))


def symlink() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("IHE_XDM/SUBSET01/LIEN")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def nested() -> bytes:
    return zip_of([("README.TXT", b"inner"), ("../../evil", b"x")])


CASES = {
    # name: (archive, verdict, rule, what the reason says)
    "zip slip": (lambda: with_entries(("../../../tmp/evil.sh", b"#!/bin/sh\n")), "FAIL", "XDM-ARC-00", "escaping the archive"),
    "absolute path": (lambda: with_entries(("/etc/cron.d/evil", b"x")), "FAIL", "XDM-ARC-00", "absolute"),
    "symlink": (lambda: with_entries((symlink(), b"/etc/passwd")), "FAIL", "XDM-ARC-00", "link"),
    "zip bomb": (lambda: with_entries(("IHE_XDM/SUBSET01/BOMB.XML", b"\0" * (200 * 1024 * 1024))), "FAIL", "XDM-ARC-00", "ratio"),
    # a zip inside is never opened: a file like another, here unlisted
    "nested zip": (lambda: with_entries(("IHE_XDM/SUBSET01/INNER.ZIP", nested())), "FAIL", "XDM-LIST-01", "listed by no metadata entry"),
    "10,000 entries": (lambda: with_entries(*[(f"IHE_XDM/SUBSET01/F{n:05d}.TXT", b"") for n in range(10_000)]), "FAIL", "XDM-ARC-00", "too many entries"),
    "truncated": (lambda: good_archive()[: len(good_archive()) // 2], "FAIL", "XDM-ARC-00", "zip"),
    "duplicate names": (lambda: with_entries(("IHE_XDM/SUBSET01/DOC0001.XML", b"<other/>")), "FAIL", "XDM-ARC-00", "duplicate"),
    "not a zip": (lambda: b"%PDF-1.4 not an archive", "FAIL", "XDM-ARC-00", "zip"),
    "empty": (lambda: b"", "FAIL", "XDM-ARC-00", "zip"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hostile_archive_is_a_finding_never_a_crash_nor_a_file_written(tmp_path, case):
    build, verdict, rule, said = CASES[case]
    data = build()
    cwd_before, tmp_before = set(os.listdir(".")), set(os.listdir("/tmp"))
    tracemalloc.start()
    try:
        got, rules, findings = judge(tmp_path, data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (got, rule in rules) == (verdict, True), [(f.rule, f.message.texts()) for f in findings]
    assert any(said in f.message.texts()["en"].lower() for f in findings if f.rule == rule)
    # nothing extracted anywhere: the store holds the archive and the session, nothing else
    assert len(os.listdir(tmp_path / "store")) == 2
    assert set(os.listdir(".")) == cwd_before and not {n for n in set(os.listdir("/tmp")) - tmp_before if "evil" in n}
    assert peak < 64 * 1024 * 1024 + 2 * len(data) if case != "zip bomb" else peak < 32 * 1024 * 1024


def test_the_conformant_archive_passes_the_same_path(tmp_path):
    assert judge(tmp_path, good_archive())[:2] == ("PASS", set())


def test_the_metadata_check_of_a_refused_archive_is_inconclusive_and_says_why(tmp_path):
    verdict, rules, _ = judge(tmp_path, with_entries(("../x", b"")), checks.check_metadata)
    assert (verdict, rules) == ("INCONCLUSIVE", set())
