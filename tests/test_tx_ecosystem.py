"""The terminology stand-in against the HL7 terminology ecosystem test suite (peers' tests,
not ours): the self-contained suites agree at least 90% on $validate-code and $expand.

The suite is not part of this project: the test runs when ``HARNESS_TX_SUITE`` names a
folder holding it (``tests/`` of HL7/fhir-tx-ecosystem-ig at the pinned commit) or when
``bench/tx_ecosystem.py`` has cached it, and skips with the reason otherwise."""
import importlib.util
import os
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench" / "tx_ecosystem.py"
spec = importlib.util.spec_from_file_location("tx_ecosystem", BENCH)
tx = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tx)


def suite_folder() -> Path | None:
    for candidate in (os.environ.get("HARNESS_TX_SUITE"), tx.CACHE / tx.COMMIT):
        if candidate and (Path(candidate) / "tests" / "test-cases.json").is_file():
            return Path(candidate)
        if candidate and (Path(candidate) / "test-cases.json").is_file():
            return Path(candidate)
    return None


def test_the_stand_in_agrees_with_the_hl7_terminology_suite():
    found = suite_folder()
    if found is None:
        pytest.skip(f"HL7 terminology test suite absent ({tx.REPO}@{tx.COMMIT[:12]}): "
                    "set HARNESS_TX_SUITE or run bench/tx_ecosystem.py once where GitHub is reachable")
    folder = tx.locate(str(found), None)  # the pinned content, or it stops
    from harness.terminology import Snapshot, SnapshotTerminology, TerminologyServer
    empty = Snapshot("empty")
    empty._build()
    server = TerminologyServer(SnapshotTerminology(empty, as_of="2026-12-01")).start()
    try:
        rows = tx.run(folder, tx.load_tests(folder, False), server.base_url)
    finally:
        server.stop()
    table = tx.summary(rows)
    assert not server.failures
    for op in ("validate-code", "expand"):
        assert table[op]["agree"] >= 0.9 * table[op]["tests"], (op, table[op])
