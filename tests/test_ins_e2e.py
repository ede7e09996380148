"""INS end to end: the demo's three channels, each defect caught, production identities
masked in what people read but byte-exact in the sealed bundle, the official examples."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness_demo.insi_client import INSI_DEFECTS
from harness_demo.patients import INS_DEFECTS
from harness_ins.hl7v2 import read_message
from harness_ins.identity import SystemClass, classify_system
from tests.harness_run import RunPool, run_harness

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT.parent / "shared" / "corpus" / "ans-hl7v2-examples"
INS_REQUIREMENTS = {"INS-HL7V2", "INS-CDA", "INS-FHIR", "INS-COHERENCE", "INS-PROTECTION"}
LIFECYCLE_REQUIREMENTS = {"INS-INSI", "INS-INSI-UNAVAILABLE"}
# the channel scenarios (a channel defect's run judges these; the lifecycle's, with its
# registrations through INSi, runs in the conformant run and in the lifecycle defects' run)
CHANNEL_SCENARIOS = [a for s in ("ins-data-protection", "ins-hl7v2", "ins-cda", "ins-fhir", "ins-cross-channel") for a in ("--scenario", s)]
# lifecycle defect: (its rule, the case it is found on) -- all in one run: each breaks one case's
# registration (harness_ins.insi.LIFECYCLE_CASES), so a finding says which defect made it; but
# the DMP's, which would share the case of the one qualifying without a document: its own run
LIFECYCLE_DMP = {"insi-shares-unqualified": ("DMP-INSI-01", "found:"), "insi-mails-unqualified": ("MSS-INSI-01", "found:")}
SHARING_REQUIREMENTS = {"DMP-INSI", "MSS-INSI"}
LIFECYCLE = {
    "insi-trusts-card": ("INSI-01", "card:"),
    "insi-own-traits": ("INSI-02", "found-validated:"),
    "insi-ins-without-match": ("INSI-03", "several:"),
    "insi-replaced-ins": ("INSI-04", "replaced:"),
    "insi-qualified-without-document": ("INSI-05", "found:"),
    "insi-retry-forever": ("INSI-06", "unavailable: insi.session"),
    "insi-user-not-told": ("INSI-06", "unavailable: insi.answers"),
}

# defect: (the rule that must be found, every requirement that fails with it)
EXPECTED = {
    "ins-malformed": ("INS-MAT-01", {"INS-HL7V2"}),
    "ins-key": ("INS-MAT-02", {"INS-HL7V2"}),
    "ins-production-oid": ("INS-SYS-01", {"INS-PROTECTION", "INS-COHERENCE"}),  # and the system differs from HL7's
    "ins-unknown-authority": ("INS-SYS-02", {"INS-HL7V2", "INS-COHERENCE"}),
    "ins-no-status": ("INS-STA-01", {"INS-HL7V2"}),
    "ins-fictitious-qualified": ("INS-STA-02", {"INS-HL7V2"}),
    "ins-doubtful-fictitious": ("INS-STA-03", {"INS-HL7V2", "INS-COHERENCE"}),  # PROV here, QUAL elsewhere
    "ins-not-qualified": ("INS-STA-04", {"INS-FHIR", "INS-COHERENCE"}),
    "ins-unknown-attribute": ("INS-STA-05", set()),  # a warning
    "ins-no-birth-name": ("INS-TRA-01", {"INS-CDA"}),
    "ins-no-first-given-name": ("INS-TRA-02", {"INS-FHIR"}),
    "ins-given-names": ("INS-TRA-03", {"INS-HL7V2"}),
    "ins-bad-sex": ("INS-TRA-04", {"INS-FHIR", "INS-COHERENCE"}),
    "ins-bad-birth-date": ("INS-TRA-05", {"INS-HL7V2", "INS-COHERENCE"}),
    "ins-no-birth-place": ("INS-TRA-06", {"INS-CDA"}),
    "ins-nir-sex": ("INS-COH-01", {"INS-COHERENCE"}),  # a warning in the channel, an error across channels
    "ins-nir-birth": ("INS-COH-02", {"INS-COHERENCE"}),
    "ins-name-qualifier": ("INS-CDA-01", {"INS-CDA"}),
    "ins-fhir-system": ("INS-FHIR-01", {"INS-FHIR"}),
    "ins-fhir-no-reliability": ("INS-FHIR-02", {"INS-FHIR"}),
    "ins-fhir-json": ("FHIR-JSON-01", {"INS-FHIR"}),
    "ins-channel-mismatch": ("INS-XCH-01", {"INS-COHERENCE"}),
    "ins-cda-unqualified": ("INS-XCH-02", {"INS-COHERENCE"}),
    "hl7-line-feeds": ("HL7-SEG-01", set()),  # a warning
    "hl7-no-msh": ("HL7-MSH-01", {"INS-HL7V2"}),
}


def test_every_ins_defect_has_an_expectation():
    assert set(EXPECTED) == set(INS_DEFECTS)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every run of the module with fixed arguments, started at once (tests/harness_run.py)."""
    with RunPool(tmp_path_factory) as pool:
        pool.harness("conformant", "--scenario", "ins")
        for defect in sorted(EXPECTED):
            pool.harness(f"defect/{defect}", *CHANNEL_SCENARIOS, "--defect", defect, "--lang", "en")
        pool.harness("production", *CHANNEL_SCENARIOS, "--defect", "ins-production-oid", "-rA")
        pool.harness("lifecycle", "--scenario", "insi", *(a for d in sorted(LIFECYCLE) for a in ("--defect", d)), "--lang", "en")
        pool.harness("lifecycle-dmp", "--scenario", "dmp-insi-qualified", "--scenario", "mssante-insi-qualified", "--defect", "insi-shares-unqualified",
                     "--defect", "insi-mails-unqualified", "--lang", "en")
        folder = tmp_path_factory.mktemp("register-down")
        (folder / "t.toml").write_text('[product]\nid = "x"\nname = "X"\nversion = "1.0"\n[endpoints]\ninsi = "service://insi/"\n'
                                       'ins_register = "http://127.0.0.1:9/register"\n[services.insi]\n', encoding="utf-8")
        pool.harness("register-down", "--scenario", "insi", "--target", str(folder / "t.toml"), "--lang", "en", cwd=folder)
        if EXAMPLES.is_dir():
            pool.harness("official", "--scenario", "ins", "--target", str(ROOT / "fixtures/targets/official-hl7v2.toml"), "--lang", "en")
        yield pool


@pytest.fixture(scope="module")
def conformant(runs):
    return runs["conformant"]


def test_the_conformant_demo_passes_every_ins_requirement_through_its_three_channels(conformant):
    assert conformant.returncode == 0, conformant.stdout
    assert ({r: v for r, v in conformant.requirement_verdicts().items() if r.startswith("INS-")}
            == dict.fromkeys(sorted(INS_REQUIREMENTS | LIFECYCLE_REQUIREMENTS), "PASS"))
    m = conformant.manifest
    labels = {meta["label"] for meta in m["artefacts"].values()}
    # the feed came over MLLP and was acknowledged, documents and the 2 FHIR pages were fetched
    assert {"ins.mllp:001", "ins.mllp:002", "ins.mllp-ack:001", "ins.mllp-session", "exchange:ins.cda-live:001", "ins.fhir-search:2",
            "request:ins.feed"} <= labels
    assert m["sensitive_data"] == [] and len(m["masking"]["salt"]) == 32
    for r in m["results"]:
        assert all(c["assertions"] > 0 for c in r["checks"]), r
    with zipfile.ZipFile(conformant.bundle) as zf:
        session = next(d for d, meta in m["artefacts"].items() if meta["label"] == "ins.mllp-session")
        assert b'"ack": "AA"' in zf.read(f"artefacts/{session}")


@pytest.mark.parametrize("defect", sorted(EXPECTED))
def test_each_ins_defect_is_caught_with_its_rule(runs, defect):
    rule, failing = EXPECTED[defect]
    run = runs[f"defect/{defect}"]
    assert run.bundle is not None, run.stdout + run.stderr
    assert rule in {f["rule"] for f in run.findings()}, run.stdout
    assert run.failing() == failing, run.stdout
    assert run.returncode == (1 if failing else 0)


def test_every_insi_defect_has_an_expectation():
    assert set(LIFECYCLE) | set(LIFECYCLE_DMP) == set(INSI_DEFECTS)


def _artefact(run, label: str) -> bytes:
    m = run.manifest
    digest = next(d for d, meta in m["artefacts"].items() if meta["label"] == label)
    with zipfile.ZipFile(run.bundle) as zf:
        return zf.read(f"artefacts/{digest}")


def _emitted(run) -> dict:
    """What the software emitted, after registering, about each lifecycle case: per channel,
    (status, INS values), read from the lifecycle scenario's own inputs with the INS plugin's readers."""
    import json

    from lxml import etree

    from harness_ins import cda, fhir
    from harness_ins.insi import LIFECYCLE_CASES
    from harness_ins.identity import parse_date

    [result] = [r for r in run.manifest["results"] if r["scenario"] == "ins-insi-qualification"]
    born = {parse_date(c.traits["birth_date"]): c.ref for c in LIFECYCLE_CASES}
    out: dict = {c.ref: {} for c in LIFECYCLE_CASES}
    with zipfile.ZipFile(run.bundle) as zf:
        for name, digest in result["inputs"].items():
            data = zf.read(f"artefacts/{digest}")
            if name.startswith("mllp/"):
                found = [("hl7v2", i.traits, i.status, [x.value for x in i.identifiers if x.type_code == "INS"]) for i in read_message(data).identities]
            elif name.startswith("fhir-live/"):
                found = [("fhir", i.traits, i.status, [x.value for x in i.identifiers if classify_system(x.system).is_ins])
                         for i in fhir.read_patients(data).identities]
            elif name.startswith("cda-live/"):
                found = [("cda", i.traits, None, [x.extension for x in i.identifiers if classify_system(x.root).is_ins])
                         for i in cda.read_identities(etree.ElementTree(etree.fromstring(data)))]
            else:
                continue
            for channel, traits, status, ins in found:
                ref = born.get(parse_date(traits.birth_date))
                if ref:
                    out[ref][channel] = (status, tuple(ins), " ".join(traits.given_names), traits.birth_place)
    out["calls"] = json.loads(_artefact(run, "ins.insi-session"))["calls"]
    return out


def test_the_conformant_demo_registers_each_insi_answer_as_the_ins_referential_says(conformant):
    emitted = _emitted(conformant)
    calls = emitted.pop("calls")
    codes = {}
    for c in calls:
        codes.setdefault((c.get("asked") or {}).get("birth_date"), []).append(c.get("code") or c.get("outcome"))
    assert sorted(map(tuple, codes.values())) == sorted([("00",), ("00",), ("00",), ("00",), ("01",), ("02",),
                                                        ("unavailable",) * 3])  # three tries while INSi is down
    # the person who brings a carte Vitale is searched with it (RECVITALE), the others by their traits
    assert {c["asked"]["birth_date"]: c["operation"] for c in calls if c.get("operation")} == {
        "1990-02-03": "traits", "1975-04-05": "traits", "1962-11-20": "traits", "1958-09-10": "vitale", "1970-01-01": "traits", "1995-07-08": "traits"}
    expected = {  # case: (status in HL7 v2 and FHIR, INS emitted in every channel)
        "found": ("RECUP", ()), "found-validated": ("QUAL", ("175046912304553",)), "replaced": ("QUAL", ("262111305507803",)),
        "card": ("QUAL", ("158093306301186",)), "none": ("VALI", ()), "several": ("VALI", ()), "unavailable": ("PROV", ()),
    }
    for ref, (status, ins) in expected.items():
        assert set(emitted[ref]) == {"hl7v2", "cda", "fhir"}, (ref, emitted[ref])
        for channel, (said, values, _, _) in emitted[ref].items():
            assert values == ins, (ref, channel)
            if channel != "cda":  # a CDA header carries no identity status
                assert said == status, (ref, channel)
    # after INSi's 00, INSi's traits: every first name, and the birth place the person did not type
    assert emitted["found"]["fhir"][2:] == ("MARIE-CLAIRE ANNE", "75056")
    # the three qualified identities' notes went to the DMP and to a colleague, and only theirs
    assert {r: conformant.requirement_verdicts()[r] for r in SHARING_REQUIREMENTS} == dict.fromkeys(SHARING_REQUIREMENTS, "PASS")
    import json

    session = json.loads(_artefact(conformant, "ins.insi-session"))
    assert len(session["dmp"]["requests"]) == 3 and all(r["http_status"] == 200 for r in session["dmp"]["requests"])
    assert [m["outcome"] for m in session["mssante"]["requests"]] == ["accepted"] * 3
    answers = json.loads(_artefact(conformant, "ins.insi-answers"))
    assert {r["ref"]: (r["dmp"], r["mssante"]) for r in answers["up"]["registered"]} == {
        "found": ("not-shared", "not-sent"), "found-validated": ("done", "sent"), "replaced": ("done", "sent"), "card": ("done", "sent"),
        "none": ("not-shared", "not-sent"), "several": ("not-shared", "not-sent")}


@pytest.mark.parametrize("defect", sorted(LIFECYCLE))
def test_each_insi_lifecycle_defect_is_caught_with_its_rule_on_its_case(runs, defect):
    rule, where = LIFECYCLE[defect]
    run = runs["lifecycle"]
    assert run.bundle is not None, run.stdout + run.stderr
    assert any(f["rule"] == rule and f["location"].startswith(where) for f in run.findings()), run.stdout
    assert run.failing() == LIFECYCLE_REQUIREMENTS | SHARING_REQUIREMENTS and run.returncode == 1


@pytest.mark.parametrize("defect", sorted(LIFECYCLE_DMP))
def test_a_recovered_identity_shared_to_the_dmp_or_sent_through_mssante_is_caught_on_its_case(runs, defect):
    rule, where = LIFECYCLE_DMP[defect]
    run = runs["lifecycle-dmp"]
    found = [f for f in run.findings() if f["rule"] == rule]
    assert [f["location"].split(" ")[0] for f in found] == [where], run.stdout
    assert "NIR#" in found[0]["message"]["en"] and run.failing() == SHARING_REQUIREMENTS


def test_the_lifecycle_is_judged_again_offline_with_identical_verdicts(runs, conformant):
    from harness.cli import main as cli

    assert cli(["verify", "--replay", str(conformant.bundle)]) == 0
    assert cli(["verify", "--replay", str(runs["lifecycle"].bundle)]) == 0


def test_a_software_that_cannot_be_asked_to_register_is_an_error_said_plainly_not_a_pass(runs):
    run = runs["register-down"]
    verdicts = run.requirement_verdicts()
    assert [verdicts[r] for r in sorted(LIFECYCLE_REQUIREMENTS | SHARING_REQUIREMENTS)] == ["ERROR"] * 4, run.stdout
    assert "The software refused to register the patients (http://127.0.0.1:9/register)" in run.stdout


def test_a_production_identity_is_masked_for_people_and_kept_exact_for_replay(runs, tmp_path):
    run = runs["production"]
    matricule = "279035121518989"
    assert run.returncode == 1
    assert matricule not in run.stdout and matricule not in run.stderr
    m = run.manifest
    assert m["sensitive_data"] == ["production-identity"]
    assert "Données sensibles dans ce dossier de preuves : production-identity" in run.stdout
    with zipfile.ZipFile(run.bundle) as zf:
        for name in zf.namelist():
            if name.startswith(("findings/", "summary.")):
                assert matricule.encode() not in zf.read(name), name
        # the FHIR page as received, byte for byte, with the real value inside
        fhir_pages = [d for d, meta in m["artefacts"].items() if meta["label"].startswith("ins.fhir-search")]
        assert any(b'"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "279035121518989"' in zf.read(f"artefacts/{d}") for d in fhir_pages)
    critical = [f for f in run.findings() if f["rule"] == "INS-SYS-01"]
    assert critical and all(f["severity"] == "critical" and "NIR#" in f["message"]["fr"] for f in critical)
    # the same stand-in for the same value everywhere in the run, in every scenario
    stand_ins = {f["message"]["en"].split("NIR#", 1)[1][:12] for f in run.findings() if "NIR#" in f["message"]["en"]}
    assert len(stand_ins) == 1 and sum("NIR#" in f["message"]["en"] for f in run.findings()) >= 2
    verify = subprocess.run([sys.executable, "-m", "harness.cli", "--lang", "en", "verify", "--replay", str(run.bundle)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "identical" in verify.stdout and "production-identity" in verify.stdout


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="official HL7 v2 examples not found in ../shared/corpus (a user's fresh clone)")
def test_official_hl7v2_target_runs_every_example_and_never_prints_a_production_matricule(runs):
    run = runs["official"]
    verdicts = run.requirement_verdicts()
    assert {r: verdicts[r] for r in INS_REQUIREMENTS | LIFECYCLE_REQUIREMENTS} == {
        "INS-HL7V2": "FAIL", "INS-PROTECTION": "FAIL", "INS-COHERENCE": "FAIL", "INS-CDA": "NOT_RUN", "INS-FHIR": "NOT_RUN",
        "INS-INSI": "NOT_RUN", "INS-INSI-UNAVAILABLE": "NOT_RUN"}  # files only: no software to register patients
    findings = run.findings()
    assert len({f["location"].split(" ")[0] for f in findings if f["requirement"] == "INS-HL7V2"}) == 25  # every file judged
    assert sum(f["rule"] == "INS-SYS-01" for f in findings) == 13
    assert sum(f["rule"] == "INS-MAT-02" for f in findings) == 3
    # the examples' production matricules (the wrong-key one included) never reach people
    production = {i.value for f in EXAMPLES.iterdir() for ident in read_message(f.read_bytes()).identities
                  for i in ident.identifiers if classify_system(i.system).cls is SystemClass.PRODUCTION}
    assert "276037510669380" in production and len(production) >= 3
    for value in production:
        assert value not in run.stdout
        with zipfile.ZipFile(run.bundle) as zf:
            assert not any(value.encode() in zf.read(n) for n in zf.namelist() if n.startswith(("findings/", "summary.")))
    assert run.manifest["sensitive_data"] == ["production-identity"]
    [xch] = [f for f in findings if f["rule"] == "INS-XCH-01"]
    assert "birth name 'PATA'" in xch["message"]["en"] and "'PATIENTA'" in xch["message"]["en"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _target(tmp_path, port: int) -> Path:
    target = tmp_path / "vendor.toml"
    target.write_text(f'[product]\nid = "com.example.ehr"\nname = "EHR"\nversion = "1.0"\n\n'
                      f'[ins]\nmllp_port = {port}\nmllp_messages = 2\nmllp_wait = 20\n', encoding="utf-8")
    return target


def test_a_vendor_feed_sent_on_its_own_to_the_configured_port_is_received_and_judged(tmp_path):
    """No trigger endpoint: the software sends when it wants; the harness listens on the fixed port."""
    import socket
    import threading
    import time

    from harness_demo.patients import hl7_messages

    port = _free_port()
    acks: list[bytes] = []

    def vendor():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    for message in hl7_messages({"ins-key"}):
                        s.sendall(b"\x0b" + message + b"\x1c\r")
                        acks.append(s.recv(65536))
                return
            except OSError:
                time.sleep(0.1)

    sender = threading.Thread(target=vendor, daemon=True)
    sender.start()
    run = run_harness(tmp_path, "--scenario", "ins-hl7v2", "--target", str(_target(tmp_path, port)), "--lang", "en")
    sender.join(5)
    assert run.requirement_verdicts()["INS-HL7V2"] == "FAIL", run.stdout
    assert {f["rule"] for f in run.findings()} == {"INS-MAT-02"}
    assert [f["location"] for f in run.findings()] == ["mllp/001 PID-3[2]"]
    assert b"MSA|AE|" in acks[0] and b"MSA|AA|" in acks[1]


def test_a_busy_port_is_a_clear_error_not_a_traceback(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        run = run_harness(tmp_path, "--scenario", "ins-hl7v2", "--target", str(_target(tmp_path, s.getsockname()[1])), "--lang", "en")
    assert run.requirement_verdicts()["INS-HL7V2"] == "ERROR"
    assert "cannot listen for the MLLP feed" in run.stdout and "Traceback" not in run.stdout
