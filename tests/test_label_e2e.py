"""The label's files end to end. The transcoding table: the demo's passes the five scenarios
through the terminology stand-in, each injected defect is caught with its rule, a vendor's XLSX
table is judged on a snapshot of its own (a retired code, a code written without its dot, a
second official target, a code unknown to a complete code system, the coverage of a code system
held whole). The reversibility export: the demo's passes the four scenarios against what its
channels show (FHIR, documents, HL7 feed), each defect is caught, a vendor's export is judged
against its environment's files (open, documented and hostile members, a zip slip). Replay
concludes the same offline."""
import json
import zipfile
from pathlib import Path

import pytest

from harness_demo.label_files import LABEL_DEFECTS
from tests.harness_run import RunPool, assert_caught

SCENARIOS = ["label-transcoding-file", "label-transcoding-source", "label-transcoding-target", "label-transcoding-coverage", "label-transcoding-map"]
REQUIREMENTS = ["LES-TRANS-COVERAGE", "LES-TRANS-FILE", "LES-TRANS-MAP", "LES-TRANS-SOURCE", "LES-TRANS-TARGET"]
SELECT = tuple(a for s in SCENARIOS for a in ("--scenario", s))

# defect: ((requirement, rule) caught, every requirement that fails with it)
CASES = {
    "label-table-unknown-source": ({("LES-TRANS-SOURCE", "LABEL-SRC-02")}, {"LES-TRANS-SOURCE"}),
    "label-table-bad-target": ({("LES-TRANS-TARGET", "LABEL-TGT-02"), ("LES-TRANS-MAP", "LABEL-MAP-01")}, {"LES-TRANS-TARGET", "LES-TRANS-MAP"}),
    "label-table-disagrees": ({("LES-TRANS-MAP", "LABEL-MAP-01")}, {"LES-TRANS-MAP"}),
    "label-table-uncovered": ({("LES-TRANS-COVERAGE", "LABEL-COV-01")}, {"LES-TRANS-COVERAGE"}),
    "label-table-latin1": ({("LES-TRANS-FILE", "LABEL-TABLE-02")}, {"LES-TRANS-FILE"}),
    "label-table-formula": ({("LES-TRANS-FILE", "LABEL-TABLE-04"), ("LES-TRANS-TARGET", "LABEL-TGT-02")},
                            {"LES-TRANS-FILE", "LES-TRANS-TARGET", "LES-TRANS-MAP"}),
}

CISP = "https://mos.esante.gouv.fr/NOS/TRE_R313-CISP2/FHIR/TRE-R313-CISP2"
CIM = "https://mos.esante.gouv.fr/NOS/TRE_R310-CIM10/FHIR/TRE-R310-CIM10"
REFERENCE = "http://vendor.example/fhir/ConceptMap/reference"
SNAPSHOT = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in [
    {"resourceType": "CodeSystem", "url": CISP, "status": "active", "content": "complete",
     "concept": [{"code": c} for c in ("K86", "T90", "T89", "P17", "K77")]},
    {"resourceType": "CodeSystem", "url": CIM, "status": "active", "content": "complete",
     "concept": [{"code": "I10"}, {"code": "E11"}, {"code": "E11.9"}, {"code": "E10"}, {"code": "F17"},
                 {"code": "I15", "property": [{"code": "status", "valueCode": "retired"}]}]},
    {"resourceType": "ConceptMap", "url": REFERENCE, "status": "active", "group": [{"source": CISP, "target": CIM, "element": [
        {"code": "K86", "target": [{"code": "I10", "equivalence": "equivalent"}]},
        {"code": "T90", "target": [{"code": "E11", "equivalence": "equivalent"}, {"code": "E11.9", "equivalence": "narrower"}]},
        {"code": "T89", "target": [{"code": "E10", "equivalence": "equivalent"}]},
        {"code": "P17", "target": [{"equivalence": "unmatched"}]}]}]}]]}
ROWS = [("K86", "I10"), ("T90", "E119"), ("T89", "I15"), ("P17", "F17"), ("R05", "I10")]


def _vendor(folder):
    openpyxl = pytest.importorskip("openpyxl")
    (folder / "snap").mkdir()
    (folder / "snap" / "reference.json").write_text(json.dumps(SNAPSHOT), encoding="utf-8")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Transcodage"
    ws.append(["Code CISP", "Code CIM10"])
    for row in ROWS:
        ws.append(list(row))
    wb.save(folder / "transcodage.xlsx")
    (folder / "vendor.toml").write_text(f"""
[product]
id = "fr.example.msp"
name = "MSP"
version = "1.0.0"

[transcoding]
file = "transcodage.xlsx"
sheet = "Transcodage"
source_column = "Code CISP"
target_column = "Code CIM10"
concept_map = "{REFERENCE}"

[terminology]
snapshot = ["snap"]
builtin_snapshot = false
""", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    with RunPool(tmp_path_factory) as pool:
        pool.harness("conformant", *SELECT, "--lang", "en")
        for defect in sorted(CASES):
            pool.harness(f"defect/{defect}", *SELECT, "--lang", "en", "--defect", defect)
        vendor = _vendor(tmp_path_factory.mktemp("vendor"))
        pool.harness("vendor", *SELECT, "--lang", "en", "--target", str(vendor / "vendor.toml"), "--offline", cwd=vendor)
        none = tmp_path_factory.mktemp("none")
        (none / "t.toml").write_text('[product]\nid = "p"\nname = "P"\nversion = "1.0.0"\n', encoding="utf-8")
        pool.harness("none", *SELECT, "--lang", "en", "--target", str(none / "t.toml"), cwd=none)
        yield pool


def test_the_demo_table_passes_the_five_scenarios_and_replays(runs):
    from harness.cli import main as cli

    run = runs["conformant"]
    assert run.returncode == 0, run.stdout
    assert run.requirement_verdicts() == dict.fromkeys(REQUIREMENTS, "PASS")
    said = {f["rule"]: f["message"]["en"] for f in run.findings()}
    assert said["LABEL-TABLE-00"] == "10 transcoding row(s) read"
    assert said["LABEL-MAP-00"].endswith("10 agreement(s), 0 disagreement(s), 0 code(s) it does not transcode")
    assert said["LABEL-COV-00"].startswith("10 code(s) of 10 of http://harness.example/fhir/ValueSet/cisp2-saisie-demo transcoded: 100.0 %")
    # the answers came from the terminology stand-in (the demo's national server), every translation with its targets
    with zipfile.ZipFile(run.bundle) as zf:
        [record] = [json.loads(zf.read(f"artefacts/{d}")) for d, meta in run.manifest["artefacts"].items() if meta["label"] == "label.table.answers"]
    assert record["setup"]["mode"] == "remote" and record["setup"]["fallbacks"] == 0
    translations = [a for a in record["answers"] if a["op"] == "translate"]
    assert len(translations) == 10 and all(len(a["matches"]) == 1 for a in translations)
    assert cli(["verify", "--replay", str(run.bundle)]) == 0


@pytest.mark.parametrize("defect", sorted(CASES))
def test_each_table_defect_is_caught_with_its_rule(runs, defect):
    caught, failing = CASES[defect]
    run = assert_caught(runs[f"defect/{defect}"], caught)
    assert {r for r, v in run.requirement_verdicts().items() if v == "FAIL"} == failing


def test_a_vendors_workbook_judged_on_its_own_snapshot_offline(runs):
    from harness.cli import main as cli

    run = runs["vendor"]
    assert run.bundle is not None, run.stdout + run.stderr
    assert run.requirement_verdicts() == {"LES-TRANS-FILE": "PASS", "LES-TRANS-SOURCE": "FAIL", "LES-TRANS-TARGET": "FAIL",
                                          "LES-TRANS-COVERAGE": "FAIL", "LES-TRANS-MAP": "FAIL"}
    found = {(f["rule"], f["location"]): f for f in run.findings()}
    assert found[("LABEL-SRC-01", "transcodage.xlsx#Transcodage!6")]["message"]["en"].startswith("source code R05 unknown in")
    assert found[("LABEL-TGT-03", "transcodage.xlsx#Transcodage!4")]["severity"] == "error"  # I15, retired
    assert found[("LABEL-TGT-04", "transcodage.xlsx#Transcodage!3")]["severity"] == "warning"  # E119, read as E11.9
    # E11.9 is the reference's second target of T90: an agreement; T89 -> I15 is not E10; P17 and R05 have no reference target
    assert found[("LABEL-MAP-01", "transcodage.xlsx#Transcodage!4")]["message"]["en"] == \
        f"T89: the table gives I15, the concept map {REFERENCE} gives E10"
    assert found[("LABEL-MAP-00", "transcodage.xlsx")]["message"]["en"].endswith("2 agreement(s), 1 disagreement(s), 2 code(s) it does not transcode")  # P17, R05
    # the coverage of the whole CISP-2 the snapshot holds (its implicit value set): K77 is missing
    assert found[("LABEL-COV-00", "transcodage.xlsx")]["message"]["en"].startswith(f"4 code(s) of 5 of {CISP}?fhir_vs transcoded: 80.0 %")
    assert ("LABEL-COV-02", f"{CISP}?fhir_vs#K77") in found
    assert cli(["verify", "--replay", str(run.bundle)]) == 0


def test_a_target_without_a_table_runs_nothing_of_it(runs):
    run = runs["none"]
    assert run.requirement_verdicts() == dict.fromkeys(REQUIREMENTS, "NOT_RUN"), run.stdout
    assert "declares no transcoding table" in run.stdout


# -- the reversibility export ---------------------------------------------------------------------

EXPORT_SCENARIOS = ["label-export-format", "label-export-open", "label-export-complete", "label-export-identity"]
EXPORT_REQUIREMENTS = ["LES-REV-COMPLETE", "LES-REV-FORMAT", "LES-REV-IDENTITY", "LES-REV-OPEN"]
EXPORT_SELECT = tuple(a for s in EXPORT_SCENARIOS for a in ("--scenario", s))
EXPORT_CASES = {
    "label-export-patient-missing": ({("LES-REV-COMPLETE", "LABEL-REV-C01")}, {"LES-REV-COMPLETE"}),
    "label-export-document-missing": ({("LES-REV-COMPLETE", "LABEL-REV-C02")}, {"LES-REV-COMPLETE"}),
    "label-export-identity": ({("LES-REV-IDENTITY", "LABEL-REV-I02")}, {"LES-REV-IDENTITY"}),
    "label-export-blob": ({("LES-REV-OPEN", "LABEL-REV-O01")}, {"LES-REV-OPEN"}),
    "label-export-bad-fhir": ({("LES-REV-FORMAT", "LABEL-REV-F02")}, {"LES-REV-FORMAT"}),
    "label-export-csv-schema": ({("LES-REV-FORMAT", "LABEL-REV-F06")}, {"LES-REV-FORMAT"}),
}
SCHEMA = {"fields": [{"name": "ipp", "type": "string", "constraints": {"required": True}}, {"name": "date", "type": "date"}]}


def _environment_and_export(folder, members: dict[str, bytes], extra_target: str = ""):
    """A vendor's environment as files (its FHIR patients, its documents: what the INS channels
    read) and its export, built from the demo's own generators."""
    import zipfile as zf

    from harness_demo import patients as demo

    (folder / "env" / "fhir").mkdir(parents=True)
    (folder / "env" / "cda").mkdir()
    people = demo.patients(set())[2]
    (folder / "env" / "fhir" / "patients.json").write_text(json.dumps([demo.fhir_patient(p, set()) for p in people]), encoding="utf-8")
    for n, doc in enumerate(demo.cda_documents(set()), 1):
        (folder / "env" / "cda" / f"{n}.xml").write_bytes(doc)
    with zf.ZipFile(folder / "export.zip", "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    (folder / "schema.json").write_text(json.dumps(SCHEMA), encoding="utf-8")
    (folder / "vendor.toml").write_text(f"""
[product]
id = "fr.example.msp"
name = "MSP"
version = "1.0.0"

[ins]
fhir = "env/fhir"
cda = "env/cda"

[reversibility]
file = "export.zip"
csv_schema = "schema.json"
documented = ["data/*.bin=Format des fichiers .bin : doc/format-bin.pdf, livré avec le logiciel"]
{extra_target}
""", encoding="utf-8")
    return folder


def _good_members() -> dict[str, bytes]:
    from harness_demo import patients as demo

    people = demo.patients(set())[2]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": demo.fhir_patient(p, set())} for p in people]}
    members = {"patients.json": json.dumps(bundle).encode(), "activite.csv": b"ipp,date\n100001,2026-11-02\n"}
    members.update({f"documents/{n}.xml": d for n, d in enumerate(demo.cda_documents(set()), 1)})
    members.update({"data/base.sqlite": b"SQLite format 3\x00" + bytes(84), "data/notes.bin": b"\x01\x02\x03proprietary",
                    "compte-rendu.pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"})
    return members


@pytest.fixture(scope="module")
def export_runs(tmp_path_factory):
    with RunPool(tmp_path_factory) as pool:
        pool.harness("conformant", *EXPORT_SELECT, "--lang", "en")
        for defect in sorted(EXPORT_CASES):
            pool.harness(f"defect/{defect}", *EXPORT_SELECT, "--lang", "en", "--defect", defect)
        good = _environment_and_export(tmp_path_factory.mktemp("export-good"), _good_members())
        pool.harness("files", *EXPORT_SELECT, "--lang", "en", "--target", str(good / "vendor.toml"), cwd=good)
        from harness_demo import patients as demo

        no_realm = demo.cda_documents(set())[0].replace(b'<realmCode code="FR"/>', b"")
        bad_members = dict(_good_members(), **{"notes.json": b"\x00\x01 not json", "scan.pdf": b"GIF89a...", "old.csv": b"a;b\n1;2\n",
                                                "documents/sans-realm.xml": no_realm})
        bad = _environment_and_export(tmp_path_factory.mktemp("export-bad"), bad_members)
        pool.harness("bad", *EXPORT_SELECT, "--lang", "en", "--target", str(bad / "vendor.toml"), cwd=bad)
        from harness_demo import patients as demo_patients

        columns = ["NIR", "OID", "NOM", "PRENOM", "PRENOMS", "SEXE", "NE_LE", "LIEU"]
        rows = "NIR;OID;NOM;PRENOM;PRENOMS;SEXE;NE_LE;LIEU\n279035121518989;1.2.250.1.213.1.4.10;PAT-TROIS;DOMINIQUE;DOMINIQUE MARIE;F;1979-03-28;51215\n" \
               ";;MARTIN;PAUL;PAUL HENRI;M;1985-06-12;75057\n"
        csv_only = {"patients.csv": rows.encode(), "patients.schema.json": json.dumps({"fields": [{"name": c} for c in columns]}).encode(),
                    **{f"documents/{n}.xml": d for n, d in enumerate(demo_patients.cda_documents(set()), 1)}}
        mapped = _environment_and_export(tmp_path_factory.mktemp("export-csv"), csv_only, extra_target=(
            'csv_patients = ["patients.csv"]\n'
            'csv_traits = ["ins=NIR", "ins_system=OID", "birth_name=NOM", "first_given_name=PRENOM", "given_names=PRENOMS", "sex=SEXE", '
            '"birth_date=NE_LE", "birth_place=LIEU"]'))
        pool.harness("csv", *EXPORT_SELECT, "--lang", "en", "--target", str(mapped / "vendor.toml"), cwd=mapped)
        slip = _environment_and_export(tmp_path_factory.mktemp("export-slip"), dict(_good_members(), **{"../../evil.json": b"{}"}))
        pool.harness("slip", *EXPORT_SELECT, "--lang", "en", "--target", str(slip / "vendor.toml"), cwd=slip)
        yield pool


def test_the_demo_export_passes_the_four_scenarios_and_replays(export_runs):
    from harness.cli import main as cli

    run = export_runs["conformant"]
    assert run.returncode == 0, run.stdout
    assert run.requirement_verdicts() == dict.fromkeys(EXPORT_REQUIREMENTS, "PASS")
    [counts] = [f for f in run.findings() if f["rule"] == "LABEL-REV-C00"]
    assert counts["message"]["en"] == "environment: 2 patient(s), 2 document(s); export: 2 patient(s), 2 document(s)"
    assert cli(["verify", "--replay", str(run.bundle)]) == 0


def test_every_export_defect_of_the_demo_has_a_case():
    assert set(EXPORT_CASES) | set(CASES) == set(LABEL_DEFECTS)


@pytest.mark.parametrize("defect", sorted(EXPORT_CASES))
def test_each_export_defect_is_caught_with_its_rule(export_runs, defect):
    caught, failing = EXPORT_CASES[defect]
    run = assert_caught(export_runs[f"defect/{defect}"], caught)
    assert {r for r, v in run.requirement_verdicts().items() if v == "FAIL"} == failing


def test_a_vendors_export_of_open_and_documented_formats_passes_against_its_environment_files(export_runs):
    run = export_runs["files"]
    assert run.requirement_verdicts() == dict.fromkeys(EXPORT_REQUIREMENTS, "PASS"), run.stdout
    found = {(f["rule"], f["location"]) for f in run.findings()}
    assert ("LABEL-REV-O00", "export.zip!data/notes.bin") in found  # documented, said so


def test_what_is_not_what_it_says_or_has_no_schema_and_a_zip_slip_are_caught(export_runs):
    run = export_runs["bad"]
    failing = {(f["rule"], f["location"]) for f in run.findings() if f["severity"] == "error"}
    assert {("LABEL-REV-O02", "export.zip!notes.json"), ("LABEL-REV-O02", "export.zip!scan.pdf"), ("LABEL-REV-F01", "export.zip!notes.json"),
            ("LABEL-REV-F06", "export.zip!old.csv:1"), ("CDA-HDR-01", "export.zip!documents/sans-realm.xml /ClinicalDocument/realmCode")} <= failing, failing
    assert run.requirement_verdicts()["LES-REV-COMPLETE"] == "PASS"
    slip = export_runs["slip"]
    assert slip.requirement_verdicts() == dict.fromkeys(EXPORT_REQUIREMENTS, "FAIL")
    assert {f["rule"] for f in slip.findings() if f["severity"] == "error"} == {"LABEL-REV-00"}


def test_the_patients_of_a_csv_export_read_through_the_columns_the_target_maps(export_runs):
    run = export_runs["csv"]
    verdicts = run.requirement_verdicts()
    assert verdicts == {"LES-REV-FORMAT": "PASS", "LES-REV-OPEN": "PASS", "LES-REV-COMPLETE": "PASS", "LES-REV-IDENTITY": "FAIL"}, run.stdout
    [changed] = [f for f in run.findings() if f["rule"] == "LABEL-REV-I02"]
    assert changed["location"] == "export.zip!patients.csv:3"
    assert changed["message"]["en"].endswith("birth place '75057' in the export, '75056' in the environment")


CORPUS = Path(__file__).parents[2] / "shared" / "corpus" / "ans-testcontenucda" / "jeuxDeValeurs"


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus absent (../shared/corpus)")
def test_the_table_judged_on_the_official_kits_value_sets_answers_what_they_hold_and_no_more(tmp_path):
    """The ANS kit's value sets (official files) hold 827 CIM-10 codes, a fragment of the CIM-10:
    the codes they hold are answered, with their official labels and the snapshot's hash; a code
    they do not hold is no "unknown" but no answer, and the scenario is INCONCLUSIVE, never FAIL."""
    from tests.harness_run import run_harness

    (tmp_path / "t.csv").write_text("Code CISP-2;Code CIM-10\nK86;I10\nT90;E11\nU71;N39.0\nL03;M54.5\n", encoding="utf-8")
    (tmp_path / "vendor.toml").write_text(f"""
[product]
id = "fr.example.msp"
name = "MSP"
version = "1.0.0"

[transcoding]
file = "t.csv"
source_column = "Code CISP-2"
target_column = "Code CIM-10"

[terminology]
snapshot = ["{CORPUS}"]
builtin_snapshot = false
""", encoding="utf-8")
    run = run_harness(tmp_path, "--scenario", "label-transcoding-target", "--scenario", "label-transcoding-source", "--lang", "en",
                      "--target", str(tmp_path / "vendor.toml"), "--offline")
    assert run.requirement_verdicts() == {"LES-TRANS-TARGET": "INCONCLUSIVE", "LES-TRANS-SOURCE": "INCONCLUSIVE"}, run.stdout
    with zipfile.ZipFile(run.bundle) as zf:
        [record] = [json.loads(zf.read(f"artefacts/{d}")) for d, meta in run.manifest["artefacts"].items() if meta["label"] == "label.table.answers"]
    said = {a["question"]["code"]: a for a in record["answers"] if a["question"]["system"].endswith("TRE-R310-CIM10")}
    assert {c: a["result"] for c, a in said.items()} == {"I10": True, "E11": True, "N39.0": True, "M54.5": None}
    assert said["I10"]["display"] == "Hypertension essentielle (primitive)"
    assert said["I10"]["source"]["kind"] == "snapshot" and len(said["I10"]["source"]["sha256"]) == 64
    assert not [f for f in run.findings() if f["severity"] == "error"]
