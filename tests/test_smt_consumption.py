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
            "smt-retry-now": "SMT-USE-05", "smt-cache-everything": "SMT-USE-06", "smt-cache-stale": "SMT-USE-06",
            "smt-silence-as-invalid": "SMT-USE-04", "smt-no-timeout": "SMT-USE-07"}
WARNINGS = {"smt-no-timeout"}
STALL = 4  # seconds the stand-in holds a silent answer in the run whose demo has no deadline of its own  # no national text sets the delay: said, not failed
# a demo that keeps every answer asks nothing the second time nor while the server fails: it has its own run; so does the
# demo that takes silence for "invalid" (the one that invents "valid" would hide it), with the one that waits without a deadline
RUN_OF = {d: {"smt-cache-everything": "cache", "smt-silence-as-invalid": "silence", "smt-no-timeout": "silence"}.get(d, "defects") for d in EXPECTED}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    with RunPool(tmp_path_factory) as pool:
        pool.harness("conformant", "--scenario", "smt-consumption", "--lang", "en")
        # each defect breaks its own rule on its own requests or conclusions: one run for them
        for run in sorted(set(RUN_OF.values())):
            # the stand-in's stall is a setting (no national figure): shortened where the demo waits for it to end
            shorter = ("--set", f"services.terminology.stall={STALL}") if run == "silence" else ()
            pool.harness(run, "--scenario", "smt-consumption", "--lang", "en", *shorter,
                         *[a for d in sorted(EXPECTED) if RUN_OF[d] == run for a in ("--defect", d)])
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
    # round 2 came once every answer of round 1 was stale (no-store, max-age=1): every one asked again
    assert [a["op"] for a in answering["asked"]] == ops * 2
    assert [a["cache_control"] for a in answering["asked"]] == ["no-store", "max-age=1", "max-age=1"] * 2
    assert all(a["http_status"] == 200 for a in answering["asked"])
    assert [a["http_status"] for a in throttled["asked"]] == [429, 200, 200, 200]  # told to wait, waited, asked again
    assert [r["conclusion"] for r in answering["results"]] == ["valid", "valid", "valid"]  # the server's answers, as it gave them
    # failing, one way per operation: a silent server the demo gave up on by itself (2 s), a value set not found, a 503
    assert [(a["op"], a["fault"], a["http_status"]) for a in failing["asked"]] == [
        ("ValueSet/$validate-code", "stall", 0), ("ValueSet/$expand", "not-found", 404), ("CodeSystem/$lookup", "error503", 503)]
    silent = failing["asked"][0]
    assert silent["ended_by"] == "client" and 1.5 < silent["held"] < failing["stall"], silent
    assert [r["conclusion"] for r in failing["results"]] == ["unverified"] * 3
    replay = subprocess.run([sys.executable, "-m", "harness.cli", "--lang", "en", "verify", "--replay", str(run.bundle)],
                            capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0 and "identical verdicts" in replay.stdout, replay.stdout + replay.stderr


@pytest.mark.parametrize("defect", sorted(EXPECTED))
def test_each_smt_defect_is_caught_with_its_rule(runs, defect):
    if defect in WARNINGS:
        run = runs[RUN_OF[defect]]
        assert any(f["rule"] == EXPECTED[defect] and f["severity"] == "warning" for f in run.findings()), run.stdout
    else:
        run = assert_caught(runs[RUN_OF[defect]], {("SMT-USE", EXPECTED[defect])})
    places = {f["location"] for f in run.findings() if f["rule"] == EXPECTED[defect]}
    assert places and all(p.startswith(("smt.consumption answering", "smt.consumption throttled/", "smt.consumption failing/", "smt-check-failing results["))
                          for p in places), places


def test_what_each_smt_defect_meets_is_what_it_breaks(runs):
    """The findings say why: the stale store at the answers whose max-age had passed, a silence
    taken for a verdict at the question whose request got no answer, a wait the stand-in ended."""
    stale = [f for f in runs["defects"].findings() if f["rule"] == "SMT-USE-06"]
    assert sorted(f["message"]["en"].split(" ")[0] for f in stale) == ["CodeSystem/$lookup", "ValueSet/$expand"], stale
    assert all("max-age=1" in f["message"]["en"] for f in stale)
    silence = {f["location"]: f for f in runs["silence"].findings() if f["rule"] in ("SMT-USE-04", "SMT-USE-07")}
    assert "smt-check-failing results[0]" in silence and "concluded invalid" in silence["smt-check-failing results[0]"]["message"]["en"]
    [waited] = [f for f in silence.values() if f["rule"] == "SMT-USE-07"]
    assert "ValueSet/$validate-code" in waited["location"] and f"after {STALL:.1f} s (the setting" in waited["message"]["en"]
