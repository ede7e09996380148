"""Built-in CDA rules (no kit): header, body (level-1 model), INS identifiers anywhere, on
the official examples, on the demo's documents and on each rule broken on purpose."""
import base64
from pathlib import Path

import pytest
from lxml import etree

from harness_cda import level1
from harness_cda.document import read_cda
from harness_demo.patients import PATIENTS, PDF, cda_document
from harness_cda import rules as cda_rules
from tests.harness_run import run_harness

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT.parent / "shared" / "corpus" / "ans-testcontenucda" / "ExemplesCDA"
needs_corpus = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="official CDA examples not found in ../shared/corpus (a user's fresh clone)")
NS = {"cda": "urn:hl7-org:v3"}


def problems(data: bytes) -> list:
    doc = read_cda(data, "doc.xml")
    base = doc.tree.getpath(doc.root) if doc.embedded else "/ClinicalDocument"
    return (cda_rules.check_header(doc.root, base) + cda_rules.check_body(doc.root, base)
            + cda_rules.check_ins(doc.tree, doc.root).problems)


def failing(data: bytes) -> set[str]:
    return {p.rule for p in problems(data) if p.severity.fails}


def edited(data: bytes, edit) -> bytes:
    root = etree.fromstring(data)
    edit(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def remove(path: str):
    def edit(root):
        for el in root.xpath(path, namespaces=NS):
            el.getparent().remove(el)
    return edit


def set_attr(path: str, name: str, value: str):
    def edit(root):
        for el in root.xpath(path, namespaces=NS):
            el.set(name, value)
    return edit


def set_text(path: str, value: str):
    def edit(root):
        for el in root.xpath(path, namespaces=NS):
            el.text = value
    return edit


STRUCTURED = cda_document(PATIENTS[0], set(), 1)
LEVEL1 = cda_document(PATIENTS[0], set(), 2, level1=True)


def test_the_demo_documents_meet_every_built_in_rule():
    assert problems(STRUCTURED) == []
    assert problems(LEVEL1) == []
    doc = read_cda(LEVEL1, "n1.xml")
    body, found = level1.check(doc.root)
    assert found == [] and body.media_type == "application/pdf" and body.content == PDF
    assert [(s.software_name, s.location) for s in cda_rules.software(doc.root)] == [
        ("Cabinet Démo 3.2.1", "/ClinicalDocument/author[2]/assignedAuthor/assignedAuthoringDevice")]


HEADER_CASES = {
    "realm": (remove("cda:realmCode"), "CDA-HDR-01"),
    "type id": (set_attr("cda:typeId", "extension", "POCD_HD000041"), "CDA-HDR-02"),
    "generic template": (remove("cda:templateId[@root='1.2.250.1.213.1.1.1.1']"), "CDA-HDR-03"),
    "volet template": (remove("cda:templateId[@root='1.3.6.1.4.1.19376.1.5.3.1.1.1']"), "CDA-HDR-03"),
    "id": (remove("cda:id"), "CDA-HDR-04"),
    "id root": (set_attr("cda:id", "root", "1.2.250.x"), "CDA-HDR-04"),
    "code display": (lambda r: r.find("cda:code", NS).attrib.pop("displayName"), "CDA-HDR-05"),
    "title": (set_text("cda:title", " "), "CDA-HDR-06"),
    "date": (set_attr("cda:effectiveTime", "value", "20261301100000+0100"), "CDA-HDR-07"),
    "time zone": (set_attr("cda:effectiveTime", "value", "20261101100000+100"), "CDA-HDR-07"),
    "confidentiality": (set_attr("cda:confidentialityCode", "code", "X"), "CDA-HDR-08"),
    "language": (set_attr("cda:languageCode", "code", "french"), "CDA-HDR-09"),
    "set id": (remove("cda:setId"), "CDA-HDR-10"),
    "version number": (set_attr("cda:versionNumber", "value", "0"), "CDA-HDR-10"),
    "patient id": (remove("cda:recordTarget/cda:patientRole/cda:id"), "CDA-HDR-11"),
    "author time": (remove("cda:author[1]/cda:time"), "CDA-HDR-12"),
    "author specialty": (remove("cda:author[1]/cda:assignedAuthor/cda:code"), "CDA-HDR-12"),
    "device software": (remove("cda:author/cda:assignedAuthor/cda:assignedAuthoringDevice/cda:softwareName"), "CDA-HDR-12"),
    "custodian": (remove("cda:custodian"), "CDA-HDR-13"),
    "legal authenticator signature": (set_attr("cda:legalAuthenticator/cda:signatureCode", "code", "X"), "CDA-HDR-14"),
    "service event": (remove("cda:documentationOf"), "CDA-HDR-15"),
    "performer": (remove("cda:documentationOf/cda:serviceEvent/cda:performer"), "CDA-HDR-15"),
    "facility code": (remove("cda:componentOf/cda:encompassingEncounter/cda:location"), "CDA-HDR-16"),
    "encounter": (remove("cda:componentOf"), "CDA-HDR-16"),
    "no body": (remove("cda:component"), {"CDA-HDR-17", "CDA-BODY-01"}),
    "no section": (remove("cda:component/cda:structuredBody/cda:component"), "CDA-BODY-01"),
}


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_each_header_rule_is_broken_alone(case):
    edit, rules = HEADER_CASES[case]
    assert failing(edited(STRUCTURED, edit)) == (rules if isinstance(rules, set) else {rules})


def _with_body(text: str, media_type: str = "application/pdf", representation: str = "B64") -> bytes:
    def edit(root):
        el = root.find("cda:component/cda:nonXMLBody/cda:text", NS)
        el.text = text
        el.set("mediaType", media_type)
        el.set("representation", representation)
    return edited(LEVEL1, edit)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


LEVEL1_CASES = {
    "not base64": (_with_body(b64(PDF)[:30] + "*!" + b64(PDF)[30:]), "CDA-N1-04"),
    "truncated base64": (_with_body(b64(PDF)[:-3]), "CDA-N1-04"),
    "jpeg declared pdf": (_with_body(b64(b"\xff\xd8\xff\xe0" + b"\0" * 64)), "CDA-N1-05"),
    "pdf declared jpeg": (_with_body(b64(PDF), "image/jpeg"), "CDA-N1-05"),
    "png (not an allowed type)": (_with_body(b64(b"\x89PNG\r\n\x1a\n" + b"\0" * 32), "image/png"), "CDA-N1-03"),
    "binary declared text": (_with_body(b64(b"\x00\x01\x02binary"), "text/plain"), "CDA-N1-05"),
    "pdf not encoded": (_with_body("%PDF-1.4 ...", "application/pdf", "TXT"), "CDA-N1-04"),
    "unknown representation": (_with_body(b64(PDF), "application/pdf", "HEX"), "CDA-N1-04"),
    "empty": (_with_body(""), "CDA-N1-05"),
    "external reference": (edited(LEVEL1, lambda r: r.find("cda:component/cda:nonXMLBody/cda:text", NS).append(
        etree.fromstring('<reference xmlns="urn:hl7-org:v3" value="http://example.org/report.pdf"/>'))), "CDA-N1-02"),
    "extra template": (edited(LEVEL1, lambda r: r.insert(3, etree.fromstring('<templateId xmlns="urn:hl7-org:v3" root="1.2.250.1.213.1.1.1.55"/>'))),
                       "CDA-N1-01"),
}


@pytest.mark.parametrize("case", sorted(LEVEL1_CASES))
def test_each_level1_rule_is_broken_alone(case):
    data, rule = LEVEL1_CASES[case]
    assert failing(data) == {rule}


def test_plain_text_and_the_other_allowed_formats_pass():
    assert failing(_with_body(b64("Compte rendu : RAS.\n".encode("utf-8")), "text/plain")) == set()
    assert failing(_with_body("Compte rendu : RAS.", "text/plain", "TXT")) == set()
    assert failing(_with_body(b64(b"II*\x00" + b"\0" * 16), "image/tiff")) == set()
    assert failing(_with_body(b64(b"{\\rtf1\\ansi Compte rendu}"), "text/rtf")) == set()
    assert failing(_with_body(b64(b"\xff\xd8\xff\xe0\x00\x10JFIF"), "image/jpeg")) == set()


def test_every_ins_rooted_identifier_is_judged_wherever_it_is():
    participant = ('<participant xmlns="urn:hl7-org:v3" typeCode="INF"><associatedEntity classCode="PROV">'
                   '<id root="{root}" extension="{ext}"/></associatedEntity></participant>')

    def with_participant(root_oid: str, ext: str) -> bytes:
        def edit(root):
            root.find("cda:documentationOf", NS).addprevious(etree.fromstring(participant.format(root=root_oid, ext=ext)))
        return edited(STRUCTURED, edit)

    found = problems(with_participant("1.2.250.1.213.1.4.10", "279035121518988"))
    assert [(p.rule, p.location) for p in found if p.severity.fails] == [("INS-MAT-02", "/ClinicalDocument/participant/associatedEntity/id")]
    assert failing(with_participant("1.2.250.1.213.1.4.8", "279035121518989")) == {"INS-SYS-01"}
    assert [p.rule for p in problems(with_participant("1.2.250.1.213.1.4.99", "x"))] == ["INS-SYS-02"]
    # the patient's own identity goes through the INS plugin's CDA rules
    assert failing(edited(STRUCTURED, remove("cda:recordTarget/cda:patientRole/cda:patient/cda:birthplace"))) == {"INS-TRA-06"}
    reading = cda_rules.check_ins(read_cda(STRUCTURED, "x").tree, read_cda(STRUCTURED, "x").root)
    assert reading.matricules == {"279035121518989"} and not reading.production


# The official examples under the built-in rules: 68 of 94 pass. Each that does not, and why.
OFFICIAL_FAILURES = {
    # legalAuthenticator/time "20240106113623+100": a 3-digit UTC offset (real defect)
    **dict.fromkeys(["BIO-TROD_2024.01_Angine.xml", "BIO-TROD_2024.01_COVID-19.xml", "BIO-TROD_2024.01_COVID-19_Grippe-A_Grippe-B.xml",
                     "BIO-TROD_2024.01_Cystite.xml"], {"CDA-HDR-14"}),
    # a person author without assignedAuthor/code: the CI-SIS requires the author's profession
    # or specialty (XDS authorSpecialty is taken from it); the kit's 2017 header schematron
    # does not assert it (disagreement between official sources)
    **dict.fromkeys(["CARD-F-PRC-AVK_2022.01.xml", "CARD-F-PRC-DCI_2022.01.xml", "CARD-F-PRC-PPV_2022.01.xml", "CARD-F-PRC-PSC_2022.01.xml",
                     "CARD-F-PRC-TAP_2022.01.xml"], {"CDA-HDR-12"}),
    # production INS OID 1.2.250.1.213.1.4.8: fine in production, forbidden in a demo
    # environment, which is what the harness judges (INS-SYS-01); wrong matricule keys (INS-MAT-02)
    "CANCER-D2LM-FIDD_2022.01.xml": {"INS-SYS-01"},
    "CANCER-D2LM-FIN_2022.01.xml": {"INS-SYS-01"},
    "CSE-CS24_2024.01.xml": {"INS-MAT-02", "INS-SYS-01"},
    "CSE-CS24_2025.01.xml": {"INS-MAT-02"},
    "CSE-CS8_2024.01.xml": {"INS-MAT-02", "INS-SYS-01"},
    "CSE-CS8_2025.01.xml": {"INS-MAT-02"},
    "CSE-CS9_2024.01.xml": {"INS-MAT-02", "INS-SYS-01"},
    "CSE-CS9_2025.01.xml": {"INS-MAT-02"},
    "CSE-MDE_2023.01.xml": {"INS-MAT-02", "INS-SYS-01"},
    "OBP-SAP_2024.01.xml": {"INS-SYS-01"},
    "OBP-SCM_2024.01.xml": {"INS-SYS-01"},
    "OBP-SEM_2024.01.xml": {"INS-MAT-02", "INS-SYS-01"},
    "OBP-SNE_2024.01.xml": {"INS-MAT-02", "INS-SYS-01"},
    "OBP-SNM_2024.01.xml": {"INS-SYS-01"},
    "SDM-MR_2024.01_nouveau-ne.xml": {"INS-MAT-02"},
    # an INS on the legal authenticator, production OID and wrong key: found anywhere
    "VAC_2023.01.xml": {"INS-MAT-02", "INS-SYS-01"},
    # list of given names "ISABELLE" not starting with the first given name "RUTH"
    "eDISP-MED_2024.01.xml": {"INS-SYS-01", "INS-TRA-03"},
}


@needs_corpus
def test_the_official_examples_under_the_built_in_rules():
    documents = sorted(EXAMPLES.glob("*.xml"))
    assert len(documents) == 94
    found = {p.name: failing(p.read_bytes()) for p in documents}
    assert {name: rules for name, rules in found.items() if rules} == OFFICIAL_FAILURES
    assert sum(1 for rules in found.values() if not rules) == 68
    # the four level-1 examples meet the level-1 model (PDF bodies that decode)
    level1_docs = [p for p in documents if level1.is_level1(read_cda(p.read_bytes(), p.name).root)]
    assert [p.name for p in level1_docs] == ["BIO-CR-BIO_2021.01_CDA-R2-Niveau-1.xml", "DOC_NON_STRUCTURE_CDA-R2-N1.xml",
                                             "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml", "TLM-CR_2022.01.xml"]


DEMO_DEFECTS = {
    "cda-no-custodian": ("CISIS-BUILTIN-HEADER", "CDA-HDR-13"),
    "cda-device-no-version": ("CISIS-BUILTIN-HEADER", "CDA-HDR-12"),
    "cda-n1-not-base64": ("CISIS-BUILTIN-BODY", "CDA-N1-04"),
    "cda-n1-media-type": ("CISIS-BUILTIN-BODY", "CDA-N1-05"),
    "cda-ins-participant": ("CISIS-BUILTIN-INS", "INS-MAT-02"),
}


@pytest.mark.slow
@pytest.mark.parametrize("defects", [sorted(set(DEMO_DEFECTS) - {"cda-n1-not-base64"}), ["cda-n1-not-base64"]], ids=["four", "base64"])
def test_each_demo_document_defect_is_caught_with_its_rule(tmp_path, defects):
    args = [a for d in defects for a in ("--defect", d)]
    run = run_harness(tmp_path, "--scenario", "dmp-cda-header", "--scenario", "dmp-cda-body", "--scenario", "dmp-cda-ins", *args)
    assert run.bundle is not None, run.stdout + run.stderr
    found = {(f["requirement"], f["rule"]) for f in run.findings() if f["severity"] in ("error", "critical")}
    assert found == {DEMO_DEFECTS[d] for d in defects}
    assert run.returncode == 1
    # the matricule of the participant is shown masked
    assert "279035121518988" not in run.stdout and "279035121518988" not in str(run.findings())
