"""FHIR document sharing metadata (IHE MHD 4.2, ANS PDSm 3.1.1) read into the XDS model: a
conformant ITI-65 bundle breaks no rule and agrees with its CDA documents; each broken rule
is named with its FHIR path; stored XDS entries come back as valid FHIR DocumentReferences."""
import base64
import copy

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.documentreference import DocumentReference

from harness import parse_xml
from harness_xds import agreement, ebrim, mhd, rules
from tests.mhd_support import bundle


@pytest.fixture(scope="module")
def conformant():
    return bundle()


def judged(b):
    provided = mhd.read_provide(b)
    mapped = mhd.to_xds(provided)
    found = provided.problems + mapped.problems + rules.check_submission(mapped.submission, "xds", national=True)
    for de in mapped.submission.documents:
        data = mapped.documents.get(de.id)
        if data is not None:
            found += agreement.disagreements(de, data, parse_xml(data, source="t").getroot())
    return {(p.rule, p.location) for p in found if p.severity.fails}, mapped


def test_a_conformant_bundle_breaks_no_rule_and_agrees_with_its_documents(conformant):
    Bundle.model_validate(conformant)  # valid FHIR R4 (R4B models: the same Bundle, DocumentReference, List, Binary)
    problems, mapped = judged(conformant)
    assert problems == set()
    assert len(mapped.submission.documents) == 2 and len(mapped.documents) == 2
    de = mapped.submission.documents[0]
    assert de.location == "Bundle.entry[1].resource" and de.coded("typeCode")[0].location == "Bundle.entry[1].resource.type"
    assert de.identifiers["patientId"].endswith("&1.2.250.1.213.1.4.10&ISO^NH")


CASES = {
    # (what is changed, the rule that must name it, where)
    "searchset": (lambda b: b.update(type="searchset"), ("MHD-65-01", "Bundle.type")),
    "GET entry": (lambda b: b["entry"][2]["request"].update(method="GET"), ("MHD-65-02", "Bundle.entry[2].request.method")),
    "fullUrl twice": (lambda b: b["entry"][2].update(fullUrl=b["entry"][1]["fullUrl"]), ("MHD-65-02", "Bundle.entry[2].fullUrl")),
    "no submission set": (lambda b: b["entry"].pop(0), ("MHD-65-03", "Bundle.entry")),
    "no document": (lambda b: b.update(entry=[b["entry"][0]]), ("MHD-65-04", "Bundle.entry")),
    "url not a Binary": (lambda b: b["entry"][1]["resource"]["content"][0]["attachment"].update(url="http://elsewhere/doc"),
                         ("MHD-65-05", "Bundle.entry[1].resource.content[0].attachment.url")),
    "hash that lies": (lambda b: b["entry"][1]["resource"]["content"][0]["attachment"].update(hash="2jmj7l5rSw0yVb/vlWAYkK/YBwk="),
                       ("MHD-65-06", "Bundle.entry[1].resource.content[0].attachment.hash")),
    "size that lies": (lambda b: b["entry"][1]["resource"]["content"][0]["attachment"].update(size=12),
                       ("MHD-65-06", "Bundle.entry[1].resource.content[0].attachment.size")),
    "Binary not base64": (lambda b: b["entry"][2]["resource"].update(data="not base64!"), ("MHD-65-05", "Bundle.entry[2].resource.data")),
    "document not listed": (lambda b: b["entry"][0]["resource"]["entry"].pop(0), ("MHD-65-07", "Bundle.entry[0].resource.entry")),
    "listed, not in bundle": (lambda b: b["entry"][0]["resource"]["entry"].append({"item": {"reference": "urn:uuid:0"}}),
                              ("MHD-65-07", "Bundle.entry[0].resource.entry[2].item")),
    "no custodian": (lambda b: b["entry"][1]["resource"].pop("custodian"), ("PDSM-DR-01", "Bundle.entry[1].resource.custodian")),
    "no date": (lambda b: b["entry"][1]["resource"].pop("date"), ("PDSM-DR-02", "Bundle.entry[1].resource.date")),
    "no author": (lambda b: b["entry"][1]["resource"].pop("author"), ("PDSM-DR-03", "Bundle.entry[1].resource.author")),
    "no masterIdentifier": (lambda b: b["entry"][1]["resource"].pop("masterIdentifier"), ("PDSM-DR-05", "Bundle.entry[1].resource.masterIdentifier")),
    "no title": (lambda b: b["entry"][1]["resource"]["content"][0]["attachment"].pop("title"),
                 ("PDSM-DR-06", "Bundle.entry[1].resource.content[0].attachment.title")),
    "no period start": (lambda b: b["entry"][1]["resource"]["context"]["period"].pop("start"),
                        ("PDSM-DR-07", "Bundle.entry[1].resource.context.period.start")),
    "no source": (lambda b: b["entry"][0]["resource"].pop("source"), ("PDSM-SS-03", "Bundle.entry[0].resource.source")),
    "no sourceId": (lambda b: b["entry"][0]["resource"].update(extension=b["entry"][0]["resource"]["extension"][:1]),
                    ("PDSM-SS-02", "Bundle.entry[0].resource.extension")),
    "patient not identifiable": (lambda b: b["entry"][1]["resource"].update(subject={"reference": "Patient/nowhere"}),
                                 ("MHD-MAP-02", "Bundle.entry[1].resource.subject")),
    # the XDS rules and the XDS↔CDA agreement, reached through the mapping, name FHIR paths
    "type not the document's": (lambda b: b["entry"][1]["resource"]["type"]["coding"][0].update(code="11490-0"),
                                ("XDS-CDA-01", "Bundle.entry[1].resource.type ↔ /ClinicalDocument/code")),
    "another patient": (lambda b: b["entry"][1]["resource"]["subject"]["identifier"].update(value="1800599999999"),
                        ("XDS-MD-09", "/SubmitObjectsRequest")),
    "creation not a date": (lambda b: b["entry"][1]["resource"]["content"][0]["attachment"].update(creation="yesterday"),
                            ("XDS-MD-07", "Bundle.entry[1].resource.content[0].attachment.creation")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_broken_rule_is_named_with_its_fhir_path(conformant, case):
    b = copy.deepcopy(conformant)
    change, expected = CASES[case]
    change(b)
    problems, _ = judged(b)
    assert expected in problems, problems


def test_a_code_system_without_a_known_oid_is_said_not_guessed(conformant):
    b = copy.deepcopy(conformant)
    b["entry"][1]["resource"]["type"]["coding"][0]["system"] = "http://example.org/my-codes"
    mapped = mhd.to_xds(mhd.read_provide(b))
    [warning] = [p for p in mapped.problems if p.rule == "MHD-MAP-01"]
    assert warning.location == "Bundle.entry[1].resource.type.coding[0].system" and not warning.severity.fails
    assert mapped.submission.documents[0].coded("typeCode")[0].scheme == "http://example.org/my-codes"


def test_a_stored_entry_comes_back_as_a_valid_document_reference_with_the_same_metadata(conformant):
    mapped = mhd.to_xds(mhd.read_provide(conformant))
    element = mapped.request.find(f".//{{{ebrim.RIM}}}ExtrinsicObject")
    dr = mhd.document_reference(element, document_url="https://pdsm.test/Binary/1")
    DocumentReference.model_validate(dr)
    sent = conformant["entry"][1]["resource"]
    assert dr["type"] == sent["type"] and dr["category"] == sent["category"] and dr["securityLabel"] == sent["securityLabel"]
    assert dr["content"][0]["attachment"]["hash"] == sent["content"][0]["attachment"]["hash"]
    assert base64.b64decode(dr["content"][0]["attachment"]["hash"]).hex() == mapped.submission.documents[0].slot("hash")
    assert dr["subject"] == sent["subject"] and dr["masterIdentifier"] == sent["masterIdentifier"]


@pytest.mark.parametrize("fhir, xds", [("2026-11-02T10:00:00+01:00", "20261102090000"), ("2026-11-02T10:00:00Z", "20261102100000"),
                                       ("2026-11-02", "20261102"), ("2026-11", "202611"), ("2026-11-02T23:30+00:00", None),
                                       ("2026-11-02T23:30:00", None), ("2026-13-02T10:00:00Z", None)])
def test_fhir_dates_become_utc_dtm(fhir, xds):
    assert mhd.dtm(fhir) == xds


def test_french_code_systems_are_named_by_their_oid_both_ways():
    assert mhd.system_oid("https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument") == "1.2.250.1.213.1.1.4.1"
    assert mhd.system_oid("https://mos.esante.gouv.fr/NOS/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite") == "1.2.250.1.71.4.2.4"
    assert mhd.system_oid("urn:oid:1.2.3") == "1.2.3" and mhd.system_oid("http://loinc.org") == "2.16.840.1.113883.6.1"
    assert mhd.system_oid(mhd.oid_system("1.2.250.1.213.1.1.4.9")) == "1.2.250.1.213.1.1.4.9"
    assert mhd.oid_system("9.9.9") == "urn:oid:9.9.9"
