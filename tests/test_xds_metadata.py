"""The shared XDS metadata module: ebRIM read and write, metadata rules, agreement with the CDA."""
from pathlib import Path

import pytest
from lxml import etree

from harness_demo.patients import PATIENTS, cda_document
from harness_xds import agreement, ebrim, rules

SAMPLE = Path(__file__).parents[2] / "shared" / "corpus" / "xdm-metadata-samples" / "drimm_KA202401" / "IHE_XDM" / "SS000001" / "METADATA.XML"
CLASS = ("10", "1.2.250.1.213.1.1.4.1", "Compte rendu")
STRUCTURED_FORMAT = ("urn:asip:ci-sis:2010", "1.2.250.1.213.1.1.4.2.282", "Document à corps structuré")
INSTITUTION = "Cabinet Démo^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^399999999900001"
DOCS = [cda_document(PATIENTS[0], set(), 1), cda_document(PATIENTS[0], set(), 2, level1=True)]


def entries():
    return [agreement.derive(f"Doc{n}", d, etree.fromstring(d), class_code=CLASS, format_code=None if n == 2 else STRUCTURED_FORMAT,
                             institution=INSTITUTION) for n, d in enumerate(DOCS, 1)]


def submission(docs=None, associations=()):
    docs = docs if docs is not None else entries()
    ss = ebrim.NewObject("SubmissionSet01", slots={"submissionTime": ["20261101090000"]}, coded={"contentTypeCode": [("04", "1.2.250.1.213.2.2", "Hospitalisation de jour")]},
                         identifiers={"patientId": docs[0].identifiers["patientId"], "sourceId": "1.2.250.1.999.1.3", "uniqueId": "1.2.250.1.999.1.3.1"})
    xml = etree.tostring(ebrim.write_submission(ss, docs, list(associations)))
    return ebrim.read_submission(ebrim.find_request(etree.fromstring(xml)))


def test_written_metadata_reads_back_and_agrees_with_its_documents():
    sub = submission()
    assert rules.check_submission(sub) == []
    assert [d.id for d in sub.documents] == ["Doc1", "Doc2"]
    for entry, data in zip(sub.documents, DOCS):
        assert agreement.disagreements(entry, data, etree.fromstring(data)) == []
    assert sub.documents[1].coded("formatCode")[0].code == "urn:ihe:iti:xds-sd:pdf:2008"
    assert sub.documents[0].slot("creationTime") == "20261101090000"  # 10:00 +0100 in UTC


def test_cda_times_are_converted_to_utc():
    assert agreement.utc("20261101100000+0100") == "20261101090000"
    assert agreement.utc("20261231233000-0130") == "20270101010000"
    assert agreement.utc("20261101") == "20261101"


def _changed(index: int, **changes):
    docs = entries()
    for key, value in changes.items():
        container, name = key.split("__")
        getattr(docs[index], container)[name] = value
    return submission(docs)


AGREEMENT_CASES = {
    "type code": ({"coded__typeCode": [("11490-0", "2.16.840.1.113883.6.1", "Lettre")]}, "XDS-CDA-01"),
    "confidentiality": ({"coded__confidentialityCode": [("R", "2.16.840.1.113883.5.25", "Restreint")]}, "XDS-CDA-02"),
    "facility": ({"coded__healthcareFacilityTypeCode": [("SA01", "1.2.250.1.71.4.2.4", "Établissement public")]}, "XDS-CDA-03"),
    "practice setting": ({"coded__practiceSettingCode": [("ETABLISSEMENT", "1.2.250.1.213.1.1.4.9", "Établissement")]}, "XDS-CDA-04"),
    "patient": ({"identifiers__patientId": "162018885045327^^^&1.2.250.1.213.1.4.10&ISO^NH"}, "XDS-CDA-05"),
    "creation time": ({"slots__creationTime": ["20261101100000"]}, "XDS-CDA-07"),
    "language": ({"slots__languageCode": ["en-GB"]}, "XDS-CDA-09"),
    "unique id": ({"identifiers__uniqueId": "1.2.250.1.999.1.2^DOC-9999"}, "XDS-CDA-11"),
    "hash": ({"slots__hash": ["0" * 40]}, "XDS-CDA-15"),
    "size": ({"slots__size": ["12"]}, "XDS-CDA-15"),
}


@pytest.mark.parametrize("case", sorted(AGREEMENT_CASES))
def test_each_disagreement_names_both_places(case):
    changes, rule = AGREEMENT_CASES[case]
    sub = _changed(0, **changes)
    found = agreement.disagreements(sub.documents[0], DOCS[0], etree.fromstring(DOCS[0]))
    assert [p.rule for p in found] == [rule]
    assert " ↔ /ClinicalDocument" in found[0].location and "ExtrinsicObject[@id='Doc1']" in found[0].location
    # the other document still agrees
    assert agreement.disagreements(sub.documents[1], DOCS[1], etree.fromstring(DOCS[1])) == []


def test_metadata_rules():
    docs = entries()
    del docs[0].coded["classCode"]
    docs[1].identifiers["patientId"] = "279035121518989^^^&1.2.250.1.999&ISO^NH"
    docs[1].slots["creationTime"] = ["2026-11-01"]
    found = {(p.rule, p.message.render("en").split(":")[0]) for p in rules.check_submission(submission(docs))}
    assert ("XDS-MD-04", "classCode must appear exactly once (found 0 times)") in found
    assert any(r == "XDS-MD-09" for r, _ in found)  # a patient id that is not an INS, and two patients
    assert any(r == "XDS-MD-07" for r, _ in found)
    # a document that is no member of the submission set, an RPLC to a symbolic id
    sub = submission(associations=[(ebrim.RPLC, "Doc1", "Doc0", {})])
    assert [p.rule for p in rules.check_submission(sub)] == ["XDS-MD-10"]


@pytest.mark.skipif(not SAMPLE.is_file(), reason="XDM metadata sample not found in ../shared/corpus")
def test_the_real_sample_is_read_after_recovery():
    # not namespace-well-formed (undeclared prefix ns3): the XDM plugin reports it, and
    # reads what a recovering parser gives
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(SAMPLE.read_bytes())
    root = etree.fromstring(SAMPLE.read_bytes(), etree.XMLParser(recover=True, resolve_entities=False, no_network=True))
    sub = ebrim.read_submission(ebrim.find_request(root))
    assert [d.id for d in sub.documents] == ["DocumentKOS", "Signature01"]
    assert sub.documents[0].slot("URI") == "SS000001/KOS_1_1.DCM" and sub.documents[0].slot("hash") == "5a4009cca445f28810fd34dc8e3526cbe9814664"
    assert sub.submission_sets[0].identifiers["patientId"] == "162018885045327^^^&1.2.250.1.213.1.4.10&ISO^NH"
    found = rules.check_submission(sub, "xdm")
    # an external identifier with an unknown scheme ("1.2.3"), and the signature entry's
    # author and title fields as published
    assert ("XDS-MD-06", "warning") in {(p.rule, p.severity.value) for p in found}


def test_metadata_coded_values_are_bound_to_the_french_value_sets():
    import hashlib

    from harness.running.context import Artefact, CheckContext
    from harness_xds.terminology import coded_values

    docs = entries()
    ss = ebrim.NewObject("SubmissionSet01", slots={"submissionTime": ["20261101090000"]}, coded={"contentTypeCode": [("04", "1.2.250.1.213.2.2", "x")]},
                         identifiers={"patientId": docs[0].identifiers["patientId"], "sourceId": "1.2.3", "uniqueId": "1.2.3.4"})
    data = etree.tostring(ebrim.write_submission(ss, docs))
    digest = hashlib.sha256(data).hexdigest()
    ctx = CheckContext({"meta": Artefact(digest, len(data), "application/xml", "meta")}, {digest: data}.__getitem__, None, "s")
    found = coded_values(ctx, "meta")
    bound = sorted({(v.value_set.name, v.code) for v in found})
    assert ("JDV_J06-XdsClassCode-CISIS", "10") in bound and ("JDV_J07-XdsTypeCode-CISIS", "11488-4") in bound
    assert ("JDV_J01-XdsAuthorSpecialty-CISIS", "G15_10/SM26") in bound and ("JDV_J08-XdsConfidentialityCode-CISIS", "N") in bound
    assert {v.code for v in found}.isdisjoint({"04", "urn:ihe:iti:xds-sd:pdf:2008"})  # no value set known: not extracted
    assert all(v.system for v in found)


# -- XDM archives -----------------------------------------------------------------------------

def xdm_archive(files: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def conformant_files(uri=lambda n: f"DOC000{n}.XML", change=None) -> dict[str, bytes]:
    docs = entries()
    for n, d in enumerate(docs, 1):
        d.slots["URI"] = [uri(n)]
    if change:
        change(docs)
    ss = ebrim.NewObject("SubmissionSet01", slots={"submissionTime": ["20261101090000"]}, identifiers={
        "patientId": docs[0].identifiers["patientId"], "sourceId": "1.2.250.1.999.1.3", "uniqueId": "1.2.250.1.999.1.3.1"})
    files = {"README.TXT": b"Cabinet Demo", "INDEX.HTM": b"<html><body>index</body></html>",
             "IHE_XDM/SUBSET01/METADATA.XML": etree.tostring(ebrim.write_submission(ss, docs))}
    files.update({f"IHE_XDM/SUBSET01/DOC000{n}.XML": data for n, data in enumerate(DOCS, 1)})
    return files


def xdm_problems(files: dict[str, bytes]) -> list[tuple[str, str]]:
    from harness import SafeArchive
    from harness_xds import xdm

    with SafeArchive(xdm_archive(files)) as archive:
        reading = xdm.read(archive)
    return [(p.rule, p.severity.value) for p in reading.problems]


def test_a_conformant_xdm_archive_has_no_problem():
    from harness import SafeArchive
    from harness_xds import xdm

    with SafeArchive(xdm_archive(conformant_files())) as archive:
        reading = xdm.read(archive)
    assert reading.problems == []
    assert [(d.path, d.entry_id) for d in reading.subsets[0].documents] == [("IHE_XDM/SUBSET01/DOC0001.XML", "Doc1"), ("IHE_XDM/SUBSET01/DOC0002.XML", "Doc2")]


def _without(name):
    def change(files):
        del files[name]
        return files
    return change


XDM_CASES = {
    "no INDEX.HTM": (lambda: _without("INDEX.HTM")(conformant_files()), [("XDM-ARC-02", "error")]),
    "no README.TXT": (lambda: _without("README.TXT")(conformant_files()), [("XDM-ARC-01", "error")]),
    "unlisted file": (lambda: {**conformant_files(), "IHE_XDM/SUBSET01/EXTRA.PDF": b"%PDF-1.4"}, [("XDM-LIST-01", "error")]),
    "listed file missing": (lambda: _without("IHE_XDM/SUBSET01/DOC0002.XML")(conformant_files()), [("XDM-URI-01", "error")]),
    "wrong hash": (lambda: conformant_files(change=lambda d: d[0].slots.__setitem__("hash", ["0" * 40])), [("XDM-HASH-01", "error")]),
    "wrong size": (lambda: conformant_files(change=lambda d: d[1].slots.__setitem__("size", ["1"])), [("XDM-SIZE-01", "error")]),
    "escaping URI": (lambda: conformant_files(uri=lambda n: f"../DOC000{n}.XML"), [("XDM-URI-01", "error"), ("XDM-URI-01", "error"),
                                                                               ("XDM-LIST-01", "error"), ("XDM-LIST-01", "error")]),
    "URI from IHE_XDM/": (lambda: conformant_files(uri=lambda n: f"SUBSET01/DOC000{n}.XML"), [("XDM-URI-02", "warning"), ("XDM-URI-02", "warning")]),
    "no metadata": (lambda: _without("IHE_XDM/SUBSET01/METADATA.XML")(conformant_files()), [("XDM-ARC-03", "error"), ("XDM-LIST-01", "error"),
                                                                                              ("XDM-LIST-01", "error")]),
    "no URI": (lambda: conformant_files(change=lambda d: d[0].slots.pop("URI")), [("XDM-LIST-01", "error"), ("XDS-MD-04", "error")]),
}


@pytest.mark.parametrize("case", sorted(XDM_CASES))
def test_each_xdm_archive_defect_is_one_problem(case):
    make, expected = XDM_CASES[case]
    assert sorted(xdm_problems(make())) == sorted(expected)


@pytest.mark.skipif(not SAMPLE.is_file(), reason="XDM metadata sample not found in ../shared/corpus")
def test_the_real_sample_in_an_archive_is_judged_whole():
    """The published METADATA.XML in an archive shaped like its own (folder SS000001),
    with stand-in documents: what can be judged is, after the malformed XML is said."""
    files = {"README.TXT": b"r", "INDEX.HTM": b"i", "IHE_XDM/SS000001/METADATA.XML": SAMPLE.read_bytes(),
             "IHE_XDM/SS000001/KOS_1_1.DCM": b"DICM stand-in", "IHE_XDM/SS000001/SIGN_1.XML": b"<Signature/>"}
    found = xdm_problems(files)
    assert found[0] == ("XDM-MD-00", "error")  # undeclared prefix ns3: said, then read by recovery
    assert found.count(("XDM-URI-02", "warning")) == 2  # URI "SS000001/KOS_1_1.DCM": relative to IHE_XDM/
    assert found.count(("XDM-HASH-01", "error")) == 2 and found.count(("XDM-SIZE-01", "error")) == 2  # the stand-ins
    assert ("XDS-MD-06", "warning") in found  # an external identifier with the scheme "1.2.3"
    assert ("XDM-LIST-01", "error") not in found
