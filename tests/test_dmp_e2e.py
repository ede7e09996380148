"""The DMP simulator end to end, with the demo vendor's DMP client: the conformant flow,
every injected defect caught with its rule, and replay offline."""
import json
import zipfile

import pytest

from tests.harness_run import run_harness

DMP_REQUIREMENTS = ["CISIS-BUILTIN-BODY", "CISIS-BUILTIN-HEADER", "CISIS-BUILTIN-INS", "DMP-BLOCKED", "DMP-CONSULT", "DMP-FEED",
                    "DMP-METADATA", "DMP-METADATA-CDA", "DMP-TLS", "DMP-VIHF"]


def session(run, refusing: bool = False) -> dict:
    with zipfile.ZipFile(run.bundle) as zf:
        for digest, meta in run.manifest["artefacts"].items():
            if meta["label"] == "dmp.session":
                s = json.loads(zf.read(f"artefacts/{digest}"))
                if s["refuses_certificates"] == refusing:
                    return s
    raise AssertionError("no session")


@pytest.fixture(scope="module")
def conformant(tmp_path_factory):
    return run_harness(tmp_path_factory.mktemp("dmp"), "--scenario", "dmp", "--lang", "en")


@pytest.mark.slow
def test_the_conformant_demo_feeds_and_consults_the_dmp(conformant):
    run = conformant
    assert run.returncode == 0, run.stdout
    assert run.requirement_verdicts() == dict.fromkeys(DMP_REQUIREMENTS + ["SMT-CODE", "SMT-VALUESET"], "PASS")
    s = session(run)
    assert [(e["transaction"], e["outcome"]) for e in s["exchanges"]] == [
        ("ITI-41", "Success"), ("ITI-18", "Success"), ("ITI-41", "Success"), ("ITI-18", "Success"), ("ITI-43", "Success"), ("ITI-57", "Success")]
    first, replacement = s["exchanges"][0], s["exchanges"][2]
    assert replacement["facts"]["replaced"] == [first["facts"]["stored"][0]]
    assert [d["input"] for d in first["documents"]] == ["dmp-doc/001-Document01", "dmp-doc/001-Document02"]
    assert all(c["accepted"] and c["certificate"]["issuer"].startswith("CN=Harness test CA") for c in s["connections"])
    blocked = session(run, refusing=True)
    assert [c["accepted"] for c in blocked["connections"]] == [False]
    labels = {m["label"] for m in run.manifest["artefacts"].values()}
    assert {"dmp.request:001", "dmp.response:001", "dmp.metadata:001", "dmp.vihf:001", "dmp.document:001-Document02", "dmp.status"} <= labels
    # the client's private key never reaches the bundle; certificates only
    with zipfile.ZipFile(run.bundle) as zf:
        assert not any(b"PRIVATE KEY" in zf.read(n) for n in zf.namelist())


@pytest.mark.slow
def test_replay_reproduces_every_dmp_verdict_offline(conformant):
    from harness.cli import main as cli

    assert cli(["verify", "--replay", str(conformant.bundle)]) == 0


# defects -> the (requirement, rule) each must produce among the failing findings
CASES = {
    "vihf": (["dmp-vihf-tampered", "dmp-vihf-expired", "dmp-vihf-patient", "dmp-vihf-version-mismatch"],
             {("DMP-VIHF", "DMP-VIHF-02"), ("DMP-VIHF", "DMP-VIHF-03"), ("DMP-VIHF", "DMP-VIHF-05"), ("DMP-VIHF", "DMP-VIHF-06")}),
    "no-vihf": (["dmp-no-vihf"], {("DMP-VIHF", "DMP-VIHF-01"), ("DMP-FEED", "DMP-TX-01")}),
    "no-version": (["dmp-vihf-no-version"], {("DMP-VIHF", "DMP-VIHF-04")}),
    "cert-none": (["dmp-cert-none"], {("DMP-TLS", "DMP-TLS-01")}),
    "cert-expired": (["dmp-cert-expired"], {("DMP-TLS", "DMP-TLS-02")}),
    "cert-not-yet-valid": (["dmp-cert-not-yet-valid"], {("DMP-TLS", "DMP-TLS-03")}),
    "cert-unknown-ca": (["dmp-cert-unknown-ca"], {("DMP-TLS", "DMP-TLS-04")}),
    "metadata": (["dmp-meta-type-code", "dmp-rplc-unknown", "dmp-retry-loop"],
                 {("DMP-METADATA-CDA", "XDS-CDA-01"), ("DMP-FEED", "DMP-TX-02"), ("DMP-FEED", "DMP-FEED-02"), ("DMP-BLOCKED", "DMP-BLOCK-01")}),
    "hash": (["dmp-meta-hash"], {("DMP-FEED", "DMP-TX-02"), ("DMP-METADATA-CDA", "XDS-CDA-15")}),
    "no-author": (["dmp-meta-no-author"], {("DMP-METADATA", "XDS-MD-04"), ("DMP-FEED", "DMP-TX-02")}),
    "broken-mtom": (["dmp-broken-mtom"], {("DMP-FEED", "DMP-TX-01"), ("DMP-FEED", "DMP-TX-02")}),
    "documents": (["cda-no-custodian", "cda-n1-media-type", "term-unknown-code"],
                  {("CISIS-BUILTIN-HEADER", "CDA-HDR-13"), ("CISIS-BUILTIN-BODY", "CDA-N1-05"), ("SMT-CODE", "TERM-CODE-01")}),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_dmp_defect_is_caught_with_its_rule(tmp_path, case):
    defects, expected = CASES[case]
    run = run_harness(tmp_path, "--scenario", "dmp", "--lang", "en", *[a for d in defects for a in ("--defect", d)])
    assert run.bundle is not None, run.stdout + run.stderr
    failing = {(f["requirement"], f["rule"]) for f in run.findings() if f["severity"] in ("error", "critical")}
    assert expected <= failing, run.stdout
    assert run.returncode == 1


@pytest.mark.slow
def test_a_certificate_about_to_expire_is_a_warning(tmp_path):
    run = run_harness(tmp_path, "--scenario", "dmp-tls", "--lang", "en", "--defect", "dmp-cert-expiring")
    assert run.returncode == 0, run.stdout
    warnings = [f for f in run.findings() if f["rule"] == "DMP-TLS-05"]
    assert warnings and warnings[0]["severity"] == "warning" and "within 30 days" in warnings[0]["message"]["en"]
