"""PDSm end to end: the demo publishes to the stand-in (in front of the DMP's store) and consults
it; the conformant demo passes, its bundle replays identically offline, and each injected defect
is caught with its rule."""
import re

import pytest

from harness_demo.pdsm_defects import PDSM_DEFECTS
from tests.harness_run import RunPool, assert_caught

SCENARIOS = ("--scenario", "pdsm", "--lang", "en")  # the tag: publication, consultation, the documents' CDA and terminology
# each defect: the (requirement, rule) that must catch it
EXPECTED = {
    "pdsm-not-transaction": {("PDSM-PUBLISH", "MHD-65-01"), ("PDSM-PUBLISH", "PDSM-TX-01")},
    "pdsm-hash": {("PDSM-PUBLISH", "MHD-65-06"), ("PDSM-PUBLISH", "XDS-CDA-15")},
    "pdsm-no-custodian": {("PDSM-PUBLISH", "PDSM-DR-01")},
    "pdsm-type-code": {("PDSM-PUBLISH", "XDS-CDA-01")},
    "pdsm-class-code": {("SMT-VALUESET", "TERM-VS-01")},
    "pdsm-search-no-status": {("PDSM-CONSULT", "PDSM-CONS-02")},
    "pdsm-first-page-only": {("PDSM-CONSULT", "PDSM-CONS-05")},
    "pdsm-reads-superseded": {("PDSM-CONSULT", "PDSM-CONS-04")},
    "pdsm-error-as-empty": {("PDSM-CONSULT", "PDSM-CONS-06")},
}
# defects that judge different exchanges share a run; one that stops the publication has its own
RUN_OF = {"pdsm-not-transaction": "not-transaction", "pdsm-hash": "hash", "pdsm-no-custodian": "no-custodian",
          "pdsm-type-code": "type-and-search", "pdsm-search-no-status": "type-and-search", "pdsm-class-code": "class-code",
          "pdsm-first-page-only": "pages-and-versions", "pdsm-reads-superseded": "pages-and-versions", "pdsm-error-as-empty": "pages-and-versions"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    with RunPool(tmp_path_factory) as pool:
        pool.harness("conformant", *SCENARIOS)
        for run in sorted(set(RUN_OF.values())):
            pool.harness(run, *SCENARIOS, *[a for d, r in sorted(RUN_OF.items()) if r == run for a in ("--defect", d)])
        yield pool


def test_every_pdsm_defect_has_an_expectation():
    assert set(EXPECTED) == set(PDSM_DEFECTS) == set(RUN_OF)


def test_the_conformant_demo_publishes_and_consults_and_replays_identically(runs):
    import subprocess
    import sys

    run = runs["conformant"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.requirement_verdicts() == dict.fromkeys(("PDSM-PUBLISH", "PDSM-CONSULT", "CISIS-BUILTIN-HEADER", "CISIS-BUILTIN-BODY",
                                                        "CISIS-BUILTIN-INS", "SMT-VALUESET", "SMT-CODE"), "PASS")
    replay = subprocess.run([sys.executable, "-m", "harness.cli", "--lang", "en", "verify", "--replay", str(run.bundle)],
                            capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0 and "identical verdicts" in replay.stdout, replay.stdout + replay.stderr


@pytest.mark.parametrize("defect", sorted(EXPECTED))
def test_each_pdsm_defect_is_caught_with_its_rule(runs, defect):
    run = assert_caught(runs[RUN_OF[defect]], EXPECTED[defect])
    # a finding names the recorded request and, for a bundle's rule, the FHIR path in it (what the software said while its
    # searches failed: the exchange that asked it)
    for _, rule in EXPECTED[defect]:
        places = [f["location"] for f in run.findings() if f["rule"] == rule]
        expected = "pdsm-consult-failing" if rule == "PDSM-CONS-06" else "pdsm-request/"
        assert places and all(p.startswith(expected) for p in places) or rule.startswith("TERM-"), (rule, places)


def test_a_code_of_the_published_metadata_is_judged_at_its_fhir_path(runs):
    run = runs["class-code"]
    failing = [f for f in run.findings() if f["rule"] == "TERM-VS-01" and f["severity"] in ("error", "critical")]
    # one per DocumentReference published (two, then the replacement), each at its category
    assert len(failing) == 3 and all(re.search(r"pdsm-request/\d+ Bundle\.entry\[\d\]\.resource\.category\[0\]", f["location"]) for f in failing), failing
