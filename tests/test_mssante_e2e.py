"""MSSanté end to end: the demo vendor sends its message to the mail simulator; the
conformant message passes, each injected defect is caught with its rule, replay reproduces
every verdict offline, a folder of .eml files is judged alike, and under two processes each
message is judged once."""
import json
import zipfile

import pytest

from tests.harness_run import RunPool, assert_caught, defect_args, run_harness

MSS_REQUIREMENTS = ["CISIS-BUILTIN-BODY", "CISIS-BUILTIN-HEADER", "CISIS-BUILTIN-INS", "MSS-ADDRESS", "MSS-MESSAGE", "MSS-RECEIVE",
                    "MSS-SUBJECT", "MSS-TRANSPORT", "SMT-CODE", "SMT-VALUESET", "XDM-ARCHIVE", "XDM-METADATA", "XDM-METADATA-CDA"]


def sessions(run) -> list[dict]:
    with zipfile.ZipFile(run.bundle) as zf:
        return [json.loads(zf.read(f"artefacts/{d}")) for d, meta in run.manifest["artefacts"].items() if meta["label"] == "mssante.session"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every run of the module with fixed arguments, started at once (tests/harness_run.py)."""
    with RunPool(tmp_path_factory) as pool:
        pool.harness("conformant", "--scenario", "mssante", "--lang", "en")
        for case, (defects, _) in sorted(CASES.items()):
            pool.harness(case, *defect_args("mssante", defects))
        pool.harness("uri", "--scenario", "mssante-xdm-archive", "--scenario", "mssante-xdm-metadata-cda", "--lang", "en",
                     "--defect", "mss-uri-from-root")
        pool.harness("two-processes", "-n", "2", "--scenario", "mssante", "--lang", "en")
        if (KIT / "schematrons").is_dir():
            cache = tmp_path_factory.mktemp("kit-cache")
            pool.harness("kit", "--scenario", "mssante-cda-kit-xsd", "--scenario", "mssante-cda-kit-header", "--set", f"cda.kit={KIT}",
                         "--lang", "en", env={"XDG_CACHE_HOME": str(cache)})
        yield pool


@pytest.fixture(scope="module")
def conformant(runs):
    return runs["conformant"]


@pytest.mark.slow
def test_the_conformant_demo_message_passes_end_to_end(conformant):
    from harness_mssante.mailbox import dovecot_binary

    run = conformant
    expected = dict.fromkeys(MSS_REQUIREMENTS, "PASS")
    # the official kit on the archives' documents: the demo's target names no kit
    expected.update(dict.fromkeys(["CISIS-CDA-IHE", "CISIS-CDA-MODELES", "CISIS-CDA-MODELES-ANS", "CISIS-CDA-STRUCMIN", "CISIS-CDA-VOLET",
                                   "CISIS-CDA-XSD"], "NOT_RUN"))
    if dovecot_binary() is None:  # the receiving side cannot run: said as an ERROR (CI installs Dovecot)
        expected["MSS-RECEIVE"] = "ERROR"
        assert "apt-get install dovecot-imapd" in run.stdout
    else:
        assert run.returncode == 0, run.stdout
    assert run.requirement_verdicts() == expected
    [s] = sessions(run)
    [conn] = s["connections"]
    [m] = s["messages"]
    assert (conn["tls"]["protocol"], conn["auth"]["login"], m["outcome"], m["tls"]) == ("TLSv1.3", "cabinet-demo", "accepted", True)
    assert [a["input"] for a in m["archives"]] == ["mss-xdm/001-1"]
    assert m["archives"][0]["documents"] == [{"input": "mss-doc/001-1-Document01", "path": "IHE_XDM/SUBSET01/DOC0001.XML", "entry": "Document01"}]
    labels = {meta["label"] for meta in run.manifest["artefacts"].values()}
    assert {"mssante.message:001", "mssante.xdm:001-1", "mssante.metadata:001-1-SUBSET01", "mssante.document:001-1-Document01"} <= labels
    with zipfile.ZipFile(run.bundle) as zf:  # the login's password and the server's key never reach the bundle
        assert not any(b"mot-de-passe-de-demo" in zf.read(n) or b"PRIVATE KEY" in zf.read(n) for n in zf.namelist())


@pytest.mark.slow
def test_replay_reproduces_every_mssante_verdict_offline(conformant):
    from harness.cli import main as cli

    assert cli(["verify", "--replay", str(conformant.bundle)]) == 0


# defects -> the (requirement, rule) each must produce among the failing findings
CASES = {
    "archive": (["mss-no-index", "mss-unlisted", "mss-hash", "mss-size"],
                {("XDM-ARCHIVE", "XDM-ARC-02"), ("XDM-ARCHIVE", "XDM-LIST-01"), ("XDM-ARCHIVE", "XDM-HASH-01"), ("XDM-ARCHIVE", "XDM-SIZE-01")}),
    "missing-document": (["mss-missing-document"], {("XDM-ARCHIVE", "XDM-URI-01")}),
    "path-escape": (["mss-path-escape"], {("XDM-ARCHIVE", "XDM-ARC-00")}),
    "metadata": (["mss-meta-malformed", "mss-meta-no-author", "mss-meta-type-code"],
                 {("XDM-METADATA", "XDM-MD-00"), ("XDM-METADATA", "XDS-MD-04"), ("XDM-METADATA-CDA", "XDS-CDA-01")}),
    "message": (["mss-attachment-type", "mss-no-human-copy", "mss-subject-patient", "mss-address-domain", "mss-plain"],
                {("MSS-MESSAGE", "MSS-XDM-02"), ("MSS-MESSAGE", "MSS-HUMAN-01"), ("MSS-SUBJECT", "MSS-SUBJ-02"), ("MSS-ADDRESS", "MSS-ADDR-02"),
                 ("MSS-TRANSPORT", "MSS-SMTP-02")}),
    "subject-mime": (["mss-subject", "mss-broken-mime"], {("MSS-SUBJECT", "MSS-SUBJ-01"), ("MSS-MESSAGE", "MSS-MIME-01")}),
    "no-attachment": (["mss-no-attachment"], {("MSS-MESSAGE", "MSS-XDM-01")}),
    "too-large": (["mss-too-large"], {("MSS-TRANSPORT", "MSS-SMTP-01")}),
    "documents": (["cda-no-custodian", "term-unknown-code"], {("CISIS-BUILTIN-HEADER", "CDA-HDR-13"), ("SMT-CODE", "TERM-CODE-01")}),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_mssante_defect_is_caught_with_its_rule(runs, case):
    assert_caught(runs[case], CASES[case][1])


@pytest.mark.slow
def test_a_uri_relative_to_ihe_xdm_is_found_and_reported_as_not_standard(runs):
    run = runs["uri"]
    assert run.returncode == 0, run.stdout
    [warning] = run.findings()
    assert (warning["rule"], warning["severity"]) == ("XDM-URI-02", "warning") and "DOC0001.XML" in warning["message"]["en"]


@pytest.mark.slow
def test_a_folder_of_eml_files_is_judged_without_a_simulator(tmp_path):
    from harness_demo.mssante_client import message

    folder = tmp_path / "exported"
    folder.mkdir()
    (folder / "1-conforme.eml").write_bytes(message(set()))
    (folder / "2-sans-objet.eml").write_bytes(message({"mss-subject", "mss-hash"}))
    (tmp_path / "target.toml").write_text("""
[product]
id = "fr.example.other"
name = "Other"
version = "3.2.1"

[mssante]
messages = "exported"
human_copy = true
""")
    run = run_harness(tmp_path, "--scenario", "mssante", "--target", str(tmp_path / "target.toml"), "--lang", "en", "--offline")
    verdicts = run.requirement_verdicts()
    assert verdicts["MSS-TRANSPORT"] == "INCONCLUSIVE" and verdicts["MSS-MESSAGE"] == "PASS", run.stdout
    assert (verdicts["MSS-SUBJECT"], verdicts["XDM-ARCHIVE"]) == ("FAIL", "FAIL")
    located = {(f["rule"], f["location"].split(" ")[0]) for f in run.findings() if f["severity"] == "error"}
    assert {("MSS-SUBJ-01", "mss-raw/002"), ("XDM-HASH-01", "mss-xdm/002-1:IHE_XDM/SUBSET01/METADATA.XML")} <= located
    assert not any(loc.startswith(("mss-raw/001", "mss-xdm/001")) for _, loc in located)


@pytest.mark.slow
def test_under_two_processes_the_message_is_sent_and_judged_once(runs):
    run = runs["two-processes"]
    assert run.returncode == 0, run.stdout
    found = sessions(run)
    assert len(found) == 1 and len(found[0]["connections"]) == 1 and len(found[0]["messages"]) == 1


SAMPLE = __import__("pathlib").Path(__file__).parents[2] / "shared" / "corpus" / "xdm-metadata-samples" / "drimm_KA202401" / "IHE_XDM" / "SS000001" / "METADATA.XML"


@pytest.mark.slow
@pytest.mark.skipif(not SAMPLE.exists(), reason="the shared corpus (xdm-metadata-samples) is absent")
def test_the_real_metadata_sample_sent_in_a_message_is_judged_end_to_end(tmp_path):
    """The published METADATA.XML (undeclared prefix, folder SS000001, URIs from IHE_XDM/) in
    an archive shaped like its own, with stand-in documents, in an exported message."""
    import io
    from email.message import EmailMessage

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in {"README.TXT": b"r", "INDEX.HTM": b"i", "IHE_XDM/SS000001/METADATA.XML": SAMPLE.read_bytes(),
                           "IHE_XDM/SS000001/KOS_1_1.DCM": b"DICM stand-in", "IHE_XDM/SS000001/SIGN_1.XML": b"<Signature/>"}.items():
            zf.writestr(name, data)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@imagerie.mssante.fr", "b@hopital.mssante.fr", "XDM/1.0/DDM+Imagerie PAT-SIX Alain 24/01/1996"
    msg["Date"], msg["Message-ID"] = "Mon, 30 Nov 2026 10:00:00 +0100", "<1@imagerie.mssante.fr>"
    msg.set_content("Imagerie")
    msg.add_attachment(buf.getvalue(), maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    (tmp_path / "mails").mkdir()
    (tmp_path / "mails" / "drimm.eml").write_bytes(msg.as_bytes())
    (tmp_path / "target.toml").write_text('[product]\nid = "x"\nname = "X"\nversion = "1"\n\n[mssante]\nmessages = "mails"\n')
    run = run_harness(tmp_path, "--scenario", "mssante", "--target", str(tmp_path / "target.toml"), "--lang", "en", "--offline")
    found = [(f["requirement"], f["rule"], f["severity"]) for f in run.findings()]
    assert ("XDM-METADATA", "XDM-MD-00", "error") in found  # said, then read by recovery
    assert found.count(("XDM-ARCHIVE", "XDM-URI-02", "warning")) == 2
    assert ("XDM-METADATA", "XDS-MD-06", "warning") in found
    verdicts = run.requirement_verdicts()
    assert verdicts["MSS-MESSAGE"] == "PASS"
    # the coded values of the recovered metadata are judged all the same: the signature
    # entry's classCode has the codingScheme "URN" (IHE DSG), not the CI-SIS system of J06
    assert ("SMT-VALUESET", "TERM-VS-01", "error") in found
    # its XML signature (IHE DSG) is no CDA document: not judged as one; no CDA in the archive
    assert not any(rule == "CDA-DOC-01" for _, rule, _ in found)
    assert (verdicts["CISIS-BUILTIN-HEADER"], verdicts["XDM-METADATA-CDA"]) == ("INCONCLUSIVE", "INCONCLUSIVE")


KIT = __import__("pathlib").Path(__file__).parents[2] / "shared" / "corpus" / "ans-testcontenucda"


@pytest.mark.slow
@pytest.mark.skipif(not (KIT / "schematrons").is_dir(), reason="the shared corpus (ans-testcontenucda) is absent")
def test_the_official_kit_judges_the_documents_of_the_archives_when_the_target_names_it(runs):
    run = runs["kit"]
    verdicts = run.requirement_verdicts()
    assert verdicts["CISIS-CDA-XSD"] == "PASS", run.stdout
    # judged: the document taken out of the message's archive, not the [cda] documents files
    assert verdicts["CISIS-CDA-STRUCMIN"] in ("PASS", "FAIL")
    located = {f["location"].split(" ")[0] for f in run.findings() if not f["location"].startswith("kit:")}  # the kit's own quirks aside
    assert located <= {"mss-doc-001-1-Document01"}
    labels = {m["label"] for m in run.manifest["artefacts"].values()}
    assert {"cda.document:mss-doc-001-1-Document01", "cda.xsd:mss-doc-001-1-Document01", "cda.kit"} <= labels


@pytest.mark.slow
def test_without_a_kit_the_kit_scenarios_on_the_archives_are_not_run(conformant):
    results = {r["scenario"]: r for r in conformant.manifest["results"]}
    assert {results[f"mssante-cda-kit-{k}"]["verdict"] for k in ("xsd", "header", "volets", "ihe", "content-models", "ans-models")} == {"NOT_RUN"}
