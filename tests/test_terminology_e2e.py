"""Terminology end to end: the demo against our SMT stand-in, each terminology defect caught,
every failure of the server giving a clear outcome (never a PASS nothing confirmed), replay
without network, and the official documents against the official value sets."""
import json
import re
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness_demo.patients import TERMINOLOGY_DEFECTS
from tests.harness_run import RunPool, run_harness

ROOT = Path(__file__).parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
REQS = {"SMT-VALUESET", "SMT-CODE"}

EXPECTED = {  # defect: (rule found, verdict of each requirement)
    # X is outside the (complete) value set; whether X exists at all in HL7's code system
    # the small snapshot cannot tell: that part stays INCONCLUSIVE, it is not made a PASS
    "term-confidentiality": ("TERM-VS-01", {"SMT-VALUESET": "FAIL", "SMT-CODE": "INCONCLUSIVE"}),
    "term-unknown-code": ("TERM-CODE-01", {"SMT-VALUESET": "PASS", "SMT-CODE": "FAIL"}),
    "term-deprecated": ("TERM-DEP-01", {"SMT-VALUESET": "PASS", "SMT-CODE": "FAIL"}),
    "term-display": ("TERM-DISP-01", {"SMT-VALUESET": "PASS", "SMT-CODE": "PASS"}),  # a warning
}


def _answers(run) -> dict:
    m = run.manifest
    result = next(r for r in m["results"] if r["scenario"] == "terminology-cda-codes")
    with zipfile.ZipFile(run.bundle) as zf:
        name = next(n for n in zf.namelist() if result["inputs"]["terminology/answers"] in n)
        return json.loads(zf.read(name))


def _verdicts(run) -> dict:
    return {k: v for k, v in run.requirement_verdicts().items() if k in REQS}


def test_every_terminology_defect_has_an_expectation():
    assert set(EXPECTED) == set(TERMINOLOGY_DEFECTS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENV_RIGHT = {"TEST_SMT_PASSWORD": "right-one", "TEST_SMT_USER": "alice", "TEST_SMT_WRONG": "right-one"}
ENV_WRONG = {**ENV_RIGHT, "TEST_SMT_WRONG": "wrong-one"}
CREDENTIALS = ('server = "service://terminology/fhir/"\ntoken_url = "service://terminology/token"\nfallback = true',
               'user = "alice"\npassword = "env:TEST_SMT_PASSWORD"', 'smt_username = "env:TEST_SMT_USER"\nsmt_password = "env:TEST_SMT_WRONG"')


def _credentials_twice(folder: Path):
    """Refused with the wrong password, then, the same target, accepted with the right one."""
    target = _target(folder, *CREDENTIALS)
    args = ("--scenario", "terminology", "--target", str(target), "--lang", "en")
    return run_harness(folder, *args, env=ENV_WRONG), run_harness(folder, *args, env=ENV_RIGHT)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every run of the module, started at once (tests/harness_run.py); each target written
    in its run's folder first."""
    f = tmp_path_factory

    def with_target(key: str, *target: str, extra: tuple[str, ...] = (), env: dict | None = None) -> None:
        folder = f.mktemp(key)
        pool.harness(key, "--scenario", "terminology", "--target", str(_target(folder, *target)), "--lang", "en", *extra, env=env, cwd=folder)

    with RunPool(f) as pool:
        pool.harness("demo", "--scenario", "terminology", "--lang", "en")
        for defect in sorted(EXPECTED):
            pool.harness(f"defect/{defect}", "--scenario", "terminology", "--defect", defect)
        for fault in ("error500", "garbage", "cut"):
            with_target(f"fault-{fault}", 'server = "service://terminology/fhir/"\nretries = 0', f'faults = ["{fault}"]')
        with_target("down", f'server = "http://127.0.0.1:{_free_port()}/fhir/"\nretries = 0')
        with_target("slow", 'server = "service://terminology/fhir/"\nretries = 0\ntimeout = 1\nfallback = true', 'faults = ["slow"]\ndelay = 3')
        pool.submit("credentials", _credentials_twice, f.mktemp("credentials"))
        with_target("offline", 'server = "https://smt.esante.gouv.fr/fhir/"', extra=("--offline",))
        if (CORPUS / "ans-testcontenucda").is_dir():
            pool.harness("official", "--scenario", "terminology", "--target", str(ROOT / "fixtures" / "targets" / "official-kit.toml"), "--lang", "en")
        yield pool


def test_demo_passes_against_the_stand_in_and_replays_without_network(runs, tmp_path):
    run = runs["demo"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert _verdicts(run) == {"SMT-VALUESET": "PASS", "SMT-CODE": "PASS"}
    record = _answers(run)
    assert record["setup"]["kind"] == "remote" and record["setup"]["software"] == "ehealth-harness terminology stand-in"
    assert record["questions"] == len(record["answers"]) == record["setup"]["cache"]["asked"]
    assert all(a["source"]["kind"] == "remote" and a["result"] is True for a in record["answers"])
    # distinct questions only: 2 documents, 19 questions for their 2 x 11 coded values
    assert record["coded_values"] > record["questions"]
    # the summary names what each verdict relied on (the plugin's report section)
    assert "Terminology used" in run.stdout
    assert re.search(r"terminology-cda-codes: server http://127\.0\.0\.1:\d+/fhir/ \(ehealth-harness terminology stand-in \S+\), "
                     r"19 question\(s\)", run.stdout)
    verify = subprocess.run([sys.executable, "-m", "harness.cli", "--lang", "en", "verify", "--replay", str(run.bundle)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "identical" in verify.stdout


@pytest.mark.parametrize("defect", sorted(EXPECTED))
def test_each_terminology_defect_is_caught(runs, defect):
    rule, verdicts = EXPECTED[defect]
    run = runs[f"defect/{defect}"]
    assert rule in {f["rule"] for f in run.findings()}, run.stdout
    assert _verdicts(run) == verdicts


def _target(tmp_path: Path, terminology: str, service: str = "", credentials: str = "") -> Path:
    path = tmp_path / "target.toml"
    path.write_text(f"""
[product]
id = "t"
name = "T"
version = "1.0"

[endpoints]
cda_index = "service://demo-vendor/cda/"

[services.demo-vendor]
defects = []

[terminology]
{terminology}

[services.terminology]
{service}

[credentials]
{credentials}
""", encoding="utf-8")
    return path


@pytest.mark.parametrize("fault", ["error500", "garbage", "cut"])
def test_a_failing_server_without_fallback_is_inconclusive_never_pass(runs, fault):
    run = runs[f"fault-{fault}"]
    assert _verdicts(run) == {"SMT-VALUESET": "INCONCLUSIVE", "SMT-CODE": "INCONCLUSIVE"}, run.stdout
    assert "without a terminology answer" in run.stdout and "fallback = true" in run.stdout


def test_a_server_that_is_down_is_inconclusive(runs):
    run = runs["down"]
    assert _verdicts(run) == {"SMT-VALUESET": "INCONCLUSIVE", "SMT-CODE": "INCONCLUSIVE"}, run.stdout
    assert "(unreachable)" in run.stdout


def test_a_slow_server_times_out_then_the_allowed_fallback_answers_and_says_so(runs):
    run = runs["slow"]
    assert _verdicts(run) == {"SMT-VALUESET": "PASS", "SMT-CODE": "PASS"}, run.stdout
    notes = [f for f in run.findings() if f["rule"] == "TERM-SRC-01"]
    assert len(notes) == 2 and all("(timeout)" in f["message"]["en"] and "relies on the snapshot" in f["message"]["en"] for f in notes)
    record = _answers(run)
    assert all(a["fallback"]["kind"] == "timeout" and a["source"]["kind"] == "snapshot" for a in record["answers"])
    # the breaker stopped asking after a few timeouts (the questions in flight at that moment included)
    assert record["setup"]["remote_calls"] < record["questions"]


def test_refused_credentials_are_an_error_that_names_the_fix(runs):
    run, right = runs["credentials"]
    assert _verdicts(run) == {"SMT-VALUESET": "ERROR", "SMT-CODE": "ERROR"}, run.stdout
    assert "token refused" in run.stdout and "check the SMT credentials" in run.stdout
    with zipfile.ZipFile(run.bundle) as zf:  # the secrets never reach the evidence
        assert not any(b"wrong-one" in zf.read(n) or b"right-one" in zf.read(n) for n in zf.namelist())
    # with the right password the same target passes
    assert _verdicts(right) == {"SMT-VALUESET": "PASS", "SMT-CODE": "PASS"}, right.stdout


def test_offline_run_uses_no_remote_server(runs):
    run = runs["offline"]
    record = _answers(run)
    assert record["setup"]["mode"] == "offline-snapshot" and "remote_calls" not in record["setup"]
    assert all(a["source"]["kind"] == "snapshot" for a in record["answers"])
    assert _verdicts(run) == {"SMT-VALUESET": "PASS", "SMT-CODE": "PASS"}, run.stdout


@pytest.mark.corpus
@pytest.mark.skipif(not (CORPUS / "ans-testcontenucda").is_dir(), reason="shared corpus absent (../shared/corpus)")
def test_official_documents_against_the_official_value_sets(runs):
    run = runs["official"]
    verdicts = _verdicts(run)
    # every header binding of the 87 examples holds; body codes of LOINC, SNOMED CT, CIM-10,
    # CCAM... cannot be confirmed offline (those code systems are not in the kit), so the
    # code requirement stays INCONCLUSIVE, never PASS
    assert verdicts == {"SMT-VALUESET": "PASS", "SMT-CODE": "INCONCLUSIVE"}, run.stdout
    steps = {c["name"]: c for r in run.manifest["results"] for c in r["checks"]}
    assert steps["terminology.value_sets"]["assertions"] > 1000
    assert "code-system-not-held" in run.stdout
    findings = run.findings()
    assert {f["rule"] for f in findings} == {"TERM-DISP-01"}
    assert any("Plan de soins" in f["message"]["en"] and "18776-5" in f["message"]["en"] for f in findings)
