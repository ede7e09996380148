"""The CDA kit plugin: compile cache, kit quirks, and verdict fidelity on the official kit."""
import json
import re
from pathlib import Path

import pytest

from harness_cda import kit as kit_module
from harness_cda.kit import Kit
from tests.harness_run import run_harness

ROOT = Path(__file__).parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
OFFICIAL = CORPUS / "ans-testcontenucda"
needs_corpus = pytest.mark.skipif(not OFFICIAL.is_dir(), reason="official CDA kit not found in ../shared/corpus (a user's fresh clone)")

MINI = ('<schema xmlns="http://purl.oclc.org/dsdl/schematron" queryBinding="xslt2"><pattern id="p">'
        '<rule context="/"><assert test="true()">ok</assert></rule></pattern></schema>')


def _mini_kit(tmp_path):
    root = tmp_path / "kit"
    (root / "schematrons").mkdir(parents=True)
    (root / "schematrons" / "CI-SIS_X.sch").write_text(MINI)
    return root


def test_compiled_stylesheets_are_cached_under_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = _mini_kit(tmp_path)
    kit = Kit(root, "1.0")
    entry = kit.compiled(root / "schematrons" / "CI-SIS_X.sch")
    assert entry.error is None and Path(entry.xslt_path).is_file()
    assert Path(entry.xslt_path).is_relative_to(tmp_path / "cache" / "harness" / "cda-kit")

    def must_not_compile(*a, **k):
        raise AssertionError("recompiled although cached")

    monkeypatch.setattr(kit_module, "compile_schema", must_not_compile)
    again = Kit(root, "1.0").compiled(root / "schematrons" / "CI-SIS_X.sch")
    assert again.xslt_path == entry.xslt_path
    # a kit change or another harness version gets another cache folder
    (root / "schematrons" / "CI-SIS_X.sch").write_text(MINI.replace("ok", "ok!"))
    assert Kit(root, "1.0").cache_dir != kit.cache_dir
    assert Kit(_mini_kit(tmp_path / "other"), "2.0").cache_dir != kit.cache_dir
    moved = _mini_kit(tmp_path / "moved")
    (moved / "schematrons" / "CI-SIS_X.sch").write_text(MINI.replace("ok", "ok!"))
    assert Kit(moved, "1.0").sha256 == Kit(root, "1.0").sha256
    assert Kit(moved, "1.0").cache_dir != Kit(root, "1.0").cache_dir
    # so does a change to the compiler itself, even under the same version number
    monkeypatch.setattr(kit_module, "COMPILER", "another-compiler")
    assert Kit(root, "1.0").cache_dir != kit.cache_dir


def test_a_folder_that_is_not_a_kit_is_refused(tmp_path):
    with pytest.raises(kit_module.KitError) as exc:
        Kit(tmp_path, "1.0")
    assert "no schematrons/ folder" in exc.value.message("en")


@needs_corpus
def test_official_kit_quirks_are_handled_and_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kit = Kit(OFFICIAL, "test")
    sch = OFFICIAL / "schematrons"
    header = kit.compiled(sch / "profils/structurationMinimale/ASIP-STRUCT-MIN-StrucMin.sch")
    assert header.error is None
    assert [q["kind"] for q in header.quirks] == ["value-set-synthesised"]
    assert "JDV_J07_XdsTypeCode_CISIS.xml" in header.quirks[0]["detail"]["en"]
    assert "reconstitué à partir de jeuxDeValeurs/JDV_J07_XdsTypeCode_CISIS.xml" in header.quirks[0]["detail"]["fr"]
    ihe = kit.compiled(sch / "profils/IHE.sch")
    assert {q["kind"] for q in ihe.quirks} == {"include-case"}
    # a value set named with the wrong letter case is found; one the kit lacks is reported
    cse = kit.compiled(sch / "CI-SIS_CSE-CS8_2022.01.sch")
    assert [q["detail"]["en"] for q in cse.quirks if q["kind"] == "file-case"] == [
        "../jeuxDeValeurs/JDV_HL7_Condition_ver_status_CISIS.xml -> ../jeuxDeValeurs/JDV_HL7_condition_ver_status_CISIS.xml (names differ only by letter case)"]
    models = kit.compiled(sch / "profils/CI-SIS_ModelesDeContenusCDA.sch")
    assert models.error is None
    assert [q["detail"]["en"].split()[0] for q in models.quirks if q["kind"] == "file-missing"] == ["../../jeuxDeValeurs/JDV_ClinicalStatusCodes_CISIS.xml"]
    broken = kit.compiled(sch / "CI-SIS_BIO-CR-BIO_2023.01.sch")
    assert broken.error is not None and "BIO-CR-BIO_2023.01" in broken.error["en"]


@needs_corpus
def test_verdicts_on_the_official_examples_match_the_official_rules(tmp_path):
    target = ROOT / "fixtures" / "targets" / "official-kit.toml"
    run = run_harness(tmp_path, "-n", "2", "-v", "--scenario", "cda-kit", "--target", str(target),
                      env={"XDG_CACHE_HOME": str(tmp_path / "cache")}, timeout=300)
    assert run.bundle is not None, run.stdout + run.stderr
    # the scenarios shared between the two workers, not all of a scenario file on one (the
    # project's own test options, read by a run started from this checkout, once put them there)
    workers = {line.split()[0] for line in run.stdout.splitlines() if re.match(r"\[gw\d\] \[ *\d+%\]", line)}
    assert workers == {"[gw0]", "[gw1]"}, run.stdout
    verdicts = run.requirement_verdicts()
    assert verdicts == {"CISIS-CDA-XSD": "PASS", "CISIS-CDA-STRUCMIN": "FAIL", "CISIS-CDA-IHE": "PASS",
                        "CISIS-CDA-MODELES": "FAIL", "CISIS-CDA-MODELES-ANS": "PASS", "CISIS-CDA-VOLET": "FAIL"}
    documents = sorted(p.name for p in (OFFICIAL / "ExemplesCDA").glob("*.xml"))

    def document_of(location: str) -> str:  # some official file names hold spaces
        return next(d for d in documents if location == d or location.startswith((d + " ", d + ":")))

    failing = {}
    for f in run.findings():
        if f["severity"] == "error":
            failing.setdefault(f["requirement"], set()).add(document_of(f["location"]))
    assert failing == {
        "CISIS-CDA-STRUCMIN": {"eDISP-MED_2024.01.xml"},
        # the two "anamnèse non structurée" variants of TLM-DA carry the same author specialty
        # (G15_10/SCH16) as TLM-DA_2022.01_TCG, outside JDV_J01
        "CISIS-CDA-MODELES": {"CANCER-FRCP_2022.01_Appareil.xml", "CANCER-FRCP_2022.01_Transversale.xml", "TLM-DA_2022.01_TCG.xml",
                              "TLM-DA_2022.01_TCG_anamnèse-non-structurée.xml", "TLM-DA_2022.01_TE1_anamnèse-non-structurée.xml"},
        # the catalogue of content models has the patient-summary type code without the
        # IPS-FR templateId
        "CISIS-CDA-VOLET": {"01_Modèles_contenus_CDA.xml"},
    }
    volet = [f for f in run.findings() if f["requirement"] == "CISIS-CDA-VOLET"]
    assert {f["location"] for f in volet if f["rule"] == "CDA-VOLET-00"} == {
        "CANCER-CR-GM_2022.01_AnalyseNonRealisee.xml", "CANCER-CR-GM_2022.01_AnalyseRealisee.xml",
        "CANCER-FRCP_2022.01_Appareil.xml", "CANCER-FRCP_2022.01_Transversale.xml", "CSE-MDE_2023.01.xml"}
    # level-1 documents are judged against the level-1 model, whatever their type code: the
    # two N1 examples of BIO and IMG and the generic N1 document claim no structured volet
    # (their templateId 1.3.6.1.4.1.19376.1.2.20 replaces the volet's); TLM-CR is a level-1
    # volet and claims it
    assert {f["location"] for f in volet if f["rule"] == "CDA-VOLET-05"} == {
        "BIO-CR-BIO_2021.01_CDA-R2-Niveau-1.xml", "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml", "DOC_NON_STRUCTURE_CDA-R2-N1.xml",
        "TLM-CR_2022.01.xml"}
    assert all("application/pdf" in f["message"]["en"] for f in volet if f["rule"] == "CDA-VOLET-05")
    level1_docs = {"BIO-CR-BIO_2021.01_CDA-R2-Niveau-1.xml", "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml", "DOC_NON_STRUCTURE_CDA-R2-N1.xml"}
    assert not [f for f in volet if f["rule"] in ("CDA-VOLET-01", "CDA-VOLET-03") and document_of(f["location"]) in level1_docs]
    assert any(f["rule"] == "CDA-VOLET-04" and f["location"] == "TLM-CR_2022.01.xml" for f in volet)
    assert any(f["rule"] == "CDA-VOLET-04" and f["location"] == "VSM_1.4_2022.01.xml" for f in volet)
    # the examples with accented file names (seven, added to the corpus later) are judged like the others
    conforming = {f["location"] for f in volet if f["rule"] == "CDA-VOLET-04"}
    assert {"BIO-CR-BIO_2024.01_DEP-CCU-HPV-structuré-CYTO-pdf.xml.xml", "BIO-CR-BIO_2024.01_DEP-CCU-tout-structuré.xml",
            "BIO-CR-BIO_2024.01_Glycémie deux unités principales_mole_masse.xml", "BIO-CR-BIO_2024.01_Glycémie mole.xml",
            "TLM-DA_2022.01_TCG_anamnèse-non-structurée.xml", "TLM-DA_2022.01_TE1_anamnèse-non-structurée.xml"} <= conforming
    ips = [f for f in volet if f["location"].startswith("01_Modèles_contenus_CDA.xml") and f["severity"] == "error"]
    assert any("1.2.250.1.213.1.1.1.51" in f["message"]["fr"] for f in ips)
    # the volets' kit quirks are findings too; with the value set's real name, CSE-CS8 2022 runs
    assert {f["location"] for f in volet if f["rule"] == "CDA-KIT-01" and "file-case" in f["message"]["en"]} == {"kit:schematrons/CI-SIS_CSE-CS8_2022.01.sch"}
    # the BIO 2023.01 volet cannot compile (empty include files): it is reported on every
    # lab report, whose other BIO versions run and decide
    unrunnable = [f for f in volet if f["rule"] == "CDA-VOLET-02"]
    bio = {p.name for p in (OFFICIAL / "ExemplesCDA").glob("BIO-CR-BIO_*.xml")} - {"BIO-CR-BIO_2021.01_CDA-R2-Niveau-1.xml"}
    assert {document_of(f["location"]) for f in unrunnable} == bio
    assert all(f["location"].endswith("CI-SIS_BIO-CR-BIO_2023.01.sch") and "BIO-CR-BIO_2023.01" in f["message"]["en"] for f in unrunnable)
    assert any("qualifier" in f["message"]["fr"] for f in run.findings() if f["requirement"] == "CISIS-CDA-STRUCMIN" and f["severity"] == "error")
    assert len(documents) == 94
    assert len([m for m in run.manifest["artefacts"].values() if m["label"].startswith("cda.document:")]) == len(documents)
    from harness.cli import main as cli

    assert cli(["verify", "--replay", str(run.bundle)]) == 0


def test_volet_family_and_version_from_file_names():
    from harness_cda.volets import family_and_version

    assert family_and_version("CI-SIS_CSE-CS24_2025.01") == ("CSE-CS24", "2025.01")
    assert family_and_version("CI-SIS_VSM_1.4_2022.01") == ("VSM", "1.4_2022.01")
    assert family_and_version("CI-SIS_eDISP-MED_2024.01") == ("eDISP-MED", "2024.01")
    assert family_and_version("CI-SIS_Other") == ("Other", "")


@needs_corpus
def test_kit_and_documents_can_be_given_on_the_command_line(tmp_path):
    docs = tmp_path / "exports"
    docs.mkdir()
    (docs / "vsm.xml").write_bytes((OFFICIAL / "ExemplesCDA" / "VSM_1.4_2022.01.xml").read_bytes())
    (docs / "hostile.xml").write_text('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><ClinicalDocument xmlns="urn:hl7-org:v3">&e;</ClinicalDocument>')
    run = run_harness(tmp_path, "--scenario", "cda-kit-xsd", "--set", f"cda.kit={OFFICIAL}", "--set", "cda.documents=exports",
                      env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert run.bundle is not None, run.stdout + run.stderr
    assert run.requirement_verdicts() == {"CISIS-CDA-XSD": "FAIL"}
    by_doc = {f["location"].split(":")[0]: f for f in run.findings() if f["severity"] == "error"}
    assert set(by_doc) == {"hostile.xml"} and by_doc["hostile.xml"]["rule"] == "CDA-DOC-01"
    assert run.manifest["target"]["cda"] == {"kit": str(OFFICIAL), "documents": str(docs)}
    assert "root:" not in json.dumps(run.findings())  # the entity was never expanded


def test_a_kit_reached_through_a_symbolic_link_compiles(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = _mini_kit(tmp_path)
    (root / "schematrons" / "CI-SIS_X.sch").write_text(MINI.replace("<pattern", "<let name=\"jdv\" value=\"'../jeuxDeValeurs/X.xml'\"/><pattern"))
    link = tmp_path / "link"
    link.symlink_to(root)
    entry = Kit(link, "1.0").compiled(link / "schematrons" / "CI-SIS_X.sch")
    assert entry.error is None
    assert [q["kind"] for q in entry.quirks] == ["file-missing"] and entry.quirks[0]["file"] == "schematrons/CI-SIS_X.sch"
