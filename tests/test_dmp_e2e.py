"""The DMP simulator end to end, with the demo vendor's DMP client: the conformant flow,
every injected defect caught with its rule, and replay offline."""
import json
import zipfile

import pytest

from tests.harness_run import RunPool, assert_caught, defect_args, run_harness

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
def runs(tmp_path_factory):
    """Every run of the module with fixed arguments, started at once (tests/harness_run.py)."""
    with RunPool(tmp_path_factory) as pool:
        pool.harness("conformant", "--scenario", "dmp", "--lang", "en")
        for case, (defects, _) in sorted(CASES.items()):
            pool.harness(case, *defect_args("dmp", defects))
        pool.harness("cert-revoked", *defect_args("dmp-tls", ["dmp-cert-revoked"]))
        pool.harness("cert-expiring", "--scenario", "dmp-tls", "--lang", "en", "--defect", "dmp-cert-expiring")
        pool.harness("two-processes", "-n", "2", "--scenario", "dmp")
        yield pool


@pytest.fixture(scope="module")
def conformant(runs):
    return runs["conformant"]


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
    assert all(c["accepted"] and c["certificate"]["issuer"].startswith("CN=Harness DMP AC organisations (test)") for c in s["connections"])
    # each client certificate was checked with the PKI's OCSP responder, and its CRL sealed
    assert all(c["revocation"]["status"] == "good" and c["revocation"]["method"] == "ocsp" for c in s["connections"])
    served = [e["facts"]["served"] for e in s["revocation"]]
    assert served.count("ocsp") == len(s["connections"]) and served[-1] == "crl", served
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
    "metadata": (["dmp-meta-type-code", "dmp-meta-class-code", "dmp-rplc-unknown", "dmp-retry-loop"],
                 {("DMP-METADATA-CDA", "XDS-CDA-01"), ("SMT-VALUESET", "TERM-VS-01"), ("DMP-FEED", "DMP-TX-02"), ("DMP-FEED", "DMP-FEED-02"),
                  ("DMP-BLOCKED", "DMP-BLOCK-01")}),
    "hash": (["dmp-meta-hash"], {("DMP-FEED", "DMP-TX-02"), ("DMP-METADATA-CDA", "XDS-CDA-15")}),
    "no-author": (["dmp-meta-no-author"], {("DMP-METADATA", "XDS-MD-04"), ("DMP-FEED", "DMP-TX-02")}),
    "broken-mtom": (["dmp-broken-mtom"], {("DMP-FEED", "DMP-TX-01"), ("DMP-FEED", "DMP-TX-02")}),
    "documents": (["cda-no-custodian", "cda-n1-media-type", "term-unknown-code"],
                  {("CISIS-BUILTIN-HEADER", "CDA-HDR-13"), ("CISIS-BUILTIN-BODY", "CDA-N1-05"), ("SMT-CODE", "TERM-CODE-01")}),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_dmp_defect_is_caught_with_its_rule(runs, case):
    assert_caught(runs[case], CASES[case][1])


@pytest.mark.slow
def test_a_revoked_certificate_is_refused_through_the_ocsp_responder_and_the_exchanges_are_sealed(runs):
    """The demo presents a certificate its authority revoked: the simulator asks the PKI's
    OCSP responder after the handshake and refuses it (DMP-TLS-07); the OCSP question and
    answer, and the CRL at the end of the session, are in the bundle, and say the same."""
    from cryptography import x509
    from cryptography.x509 import ocsp

    run = assert_caught(runs["cert-revoked"], {("DMP-TLS", "DMP-TLS-07")})
    s = session(run)
    refused = [c for c in s["connections"] if not c["accepted"]]
    assert refused and all(c["verify_code"] == 23 and c["revocation"]["status"] == "revoked" for c in refused), refused
    assert refused[0]["revocation"]["reason"] == "key_compromise" and "OCSP" in refused[0]["error"]
    serial = int(refused[0]["certificate"]["serial"], 16)
    with zipfile.ZipFile(run.bundle) as zf:
        def member(name):
            [digest] = [d for d, m in run.manifest["artefacts"].items() if m["label"] == name]
            return zf.read(f"artefacts/{digest}")
        asked = [e for e in s["revocation"] if e["facts"]["served"] == "ocsp"]
        answer = ocsp.load_der_ocsp_response(member(f"dmp.pki.response:{asked[0]['n']:03d}"))
        assert answer.serial_number == serial and answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
        assert ocsp.load_der_ocsp_request(member(f"dmp.pki.request:{asked[0]['n']:03d}")).serial_number == serial
        [crl_exchange] = [e for e in s["revocation"] if e["facts"]["served"] == "crl"]
        crl = x509.load_der_x509_crl(member(f"dmp.pki.response:{crl_exchange['n']:03d}"))
        anchors = x509.load_pem_x509_certificates(member("dmp.trust"))
        assert any(crl.issuer == a.subject and crl.is_signature_valid(a.public_key()) for a in anchors)
        assert crl.get_revoked_certificate_by_serial_number(serial) is not None


@pytest.mark.slow
def test_a_certificate_about_to_expire_is_a_warning(runs):
    run = runs["cert-expiring"]
    assert run.returncode == 0, run.stdout
    warnings = [f for f in run.findings() if f["rule"] == "DMP-TLS-05"]
    assert warnings and warnings[0]["severity"] == "warning" and "within 30 days" in warnings[0]["message"]["en"]


@pytest.mark.slow
def test_without_a_feed_endpoint_the_harness_waits_for_the_user_to_make_the_software_call(tmp_path):
    """A vendor's software the harness cannot ask: its user makes it call the simulator,
    configured with the credentials folder, while the harness waits."""
    import socket
    import threading
    import time

    from harness_demo.dmp_client import DmpClient

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    credentials = tmp_path / "credentials"
    (tmp_path / "target.toml").write_text(f"""
[product]
id = "fr.example.other"
name = "Other"
version = "3.2.1"

[endpoints]
dmp = "service://dmp/"

[dmp]
wait = 30
quiet = 1

[services.dmp]
port = {port}
credentials_dir = "credentials"
""")
    status = {}

    def user():
        deadline = time.monotonic() + 30
        while not (credentials / "client.key").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # the user takes their time: the harness keeps waiting
        status.update(DmpClient(f"https://127.0.0.1:{port}/", credentials, set(), "3.2.1").run())

    thread = threading.Thread(target=user)
    thread.start()
    run = run_harness(tmp_path, "--scenario", "dmp-feed", "--scenario", "dmp-consult", "--target", str(tmp_path / "target.toml"))
    thread.join(30)
    assert status.get("state") == "done"
    assert run.returncode == 0, run.stdout
    assert run.requirement_verdicts() == {"DMP-FEED": "PASS", "DMP-CONSULT": "PASS"}
    assert len(session(run)["exchanges"]) == 6


@pytest.mark.slow
def test_on_two_processes_the_software_is_asked_once_and_every_scenario_judges_the_same_exchanges(runs):
    run = runs["two-processes"]
    assert run.returncode == 0, run.stdout
    sessions = [m for m in run.manifest["artefacts"].values() if m["label"] == "dmp.session"]
    assert len(sessions) == 2  # the simulator the software feeds, and the one that blocks it
    assert len(session(run)["exchanges"]) == 6
    steps = {r["scenario"]: r for r in run.manifest["results"]}
    collected = [json.dumps(s["outputs"], sort_keys=True) for r in steps.values() for s in r["collect"] if s["name"] == "dmp.exchanges"]
    assert len(collected) == 11 and len(set(collected)) == 1
