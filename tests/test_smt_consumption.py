"""How the software consumes the terminology server: the demo asked to do what its user interface
does (check a code, list a value set, show a display), first with the stand-in answering, then
failing; the conformant demo passes and replays identically; each defect is caught with its rule,
at the request (or the conclusion) that breaks it."""
import subprocess
import sys

import pytest

from harness_demo.smt_client import SMT_DEFECTS
from tests.harness_run import RunPool, assert_caught

EXPECTED = {"smt-oid-url": "SMT-USE-01", "smt-no-system": "SMT-USE-02", "smt-no-language": "SMT-USE-03", "smt-invents-valid": "SMT-USE-04",
            "smt-retry-now": "SMT-USE-05", "smt-cache-everything": "SMT-USE-06"}
# a demo that keeps every answer asks nothing the second time nor while the server fails: it has its own run
RUN_OF = {d: "cache" if d == "smt-cache-everything" else "defects" for d in EXPECTED}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    with RunPool(tmp_path_factory) as pool:
        pool.harness("conformant", "--scenario", "smt-consumption", "--lang", "en")
        # each defect breaks its own rule on its own requests or conclusions: one run for them
        for run in sorted(set(RUN_OF.values())):
            pool.harness(run, "--scenario", "smt-consumption", "--lang", "en", *[a for d in sorted(EXPECTED) if RUN_OF[d] == run for a in ("--defect", d)])
        yield pool


def test_every_smt_defect_has_an_expectation():
    assert set(EXPECTED) == set(SMT_DEFECTS)


def test_the_conformant_demo_asks_as_fhir_says_concludes_nothing_while_the_server_fails_and_replays(runs):
    import json
    import zipfile

    run = runs["conformant"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.requirement_verdicts() == {"SMT-USE": "PASS"}
    with zipfile.ZipFile(run.bundle) as zf:
        [record] = [json.loads(zf.read(f"artefacts/{d}")) for d, m in run.manifest["artefacts"].items() if m["label"] == "smt.consumption"]
    answering, throttled, failing = record["phases"]
    ops = ["ValueSet/$validate-code", "ValueSet/$expand", "CodeSystem/$lookup"]
    assert [a["op"] for a in answering["asked"]] == ops * 2  # no-store: asked again the second time
    assert all(a["http_status"] == 200 for a in answering["asked"]) and all(a["http_status"] == 500 for a in failing["asked"])
    assert [a["http_status"] for a in throttled["asked"]] == [429, 200, 200, 200]  # told to wait, waited, asked again
    assert [r["conclusion"] for r in answering["results"]] == ["valid", "valid", "valid"]  # the server's answers, as it gave them
    assert [r["conclusion"] for r in failing["results"]] == ["unverified"] * 3
    replay = subprocess.run([sys.executable, "-m", "harness.cli", "--lang", "en", "verify", "--replay", str(run.bundle)],
                            capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0 and "identical verdicts" in replay.stdout, replay.stdout + replay.stderr


@pytest.mark.parametrize("defect", sorted(EXPECTED))
def test_each_smt_defect_is_caught_with_its_rule(runs, defect):
    run = assert_caught(runs[RUN_OF[defect]], {("SMT-USE", EXPECTED[defect])})
    places = {f["location"] for f in run.findings() if f["rule"] == EXPECTED[defect]}
    assert places and all(p.startswith(("smt.consumption answering", "smt.consumption throttled/", "smt.consumption failing/", "smt-check-failing results["))
                          for p in places), places
