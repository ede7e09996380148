"""The DMP simulator's registry behaves like an XDS.b registry (ITI-41/ITI-42 lifecycle, error
codes of ITI TF-3 4.2.4), and the DMP's restrictions are its own, with their ids. The NIST XDS
Toolkit's test plans are run by ``bench/nist_xds.py`` (and below when they are at hand)."""
import copy
import hashlib
import importlib.util
import os
import uuid
from pathlib import Path

import pytest
from lxml import etree

from harness_xds.registry import Registry
from harness_xds import ebrim

IHE_PATIENT = "p1^^^&1.3.6.1.4.1.21367.2005.13.20.1000&ISO"
OTHER_PATIENT = "p2^^^&1.3.6.1.4.1.21367.2005.13.20.1000&ISO"
INS = "279035121518989^^^&1.2.250.1.213.1.4.10&ISO"
DOC = b"<ClinicalDocument xmlns='urn:hl7-org:v3'/>"
RPLC, APND, XFRM = ebrim.RPLC, "urn:ihe:iti:2007:AssociationType:APND", "urn:ihe:iti:2007:AssociationType:XFRM"


def entry(n: str, patient: str, unique: str | None = None, data: bytes = DOC, entry_id: str | None = None) -> ebrim.NewObject:
    coded = {name: [("c", "1.2.3", "x")] for name in ebrim.CODED} | {"confidentialityCode": [("N", "2.16.840.1.113883.5.25", "N")]}
    return ebrim.NewObject(entry_id or f"Doc{n}", slots={"creationTime": ["20261101090000"], "languageCode": ["fr-FR"],
                                                          "sourcePatientId": [patient], "hash": [hashlib.sha1(data).hexdigest()],
                                                          "size": [str(len(data))], "repositoryUniqueId": ["1.2.3.4"]},
                           coded=coded, identifiers={"patientId": patient, "uniqueId": unique or f"1.2.250.1.999.9.{uuid.uuid4().int % 10**9}"},
                           authors=[{"authorPerson": ["^Martin^Jeanne"]}], title=f"Document {n}",
                           attributes={"mimeType": "text/xml", "objectType": ebrim.DOCUMENT_ENTRY_TYPE})


def request(patient: str, docs: list[ebrim.NewObject], associations=()) -> etree._Element:
    ss = ebrim.NewObject("SubmissionSet01", slots={"submissionTime": ["20261101090000"]}, coded={"contentTypeCode": [("04", "1.2.3", "x")]},
                         identifiers={"patientId": patient, "sourceId": "1.2.250.1.999.1.3",
                                      "uniqueId": f"1.2.250.1.999.1.3.{uuid.uuid4().int % 10**9}"})
    return ebrim.write_submission(ss, docs, list(associations))


@pytest.fixture
def registry():
    reg = Registry(1 << 20, profile="ihe")
    reg.feed(IHE_PATIENT)
    reg.feed(OTHER_PATIENT)
    return reg


def codes(outcome) -> list[str]:
    return [c for c, _ in outcome.errors]


def stored(registry, patient=IHE_PATIENT, **kw) -> str:
    out = registry.register(request(patient, [entry("1", patient, **kw)]))
    assert out.status == "Success", out.errors
    return out.facts["stored"][0]


def test_a_patient_the_registry_was_never_fed_is_unknown(registry):
    stranger = "p9^^^&1.3.6.1.4.1.21367.2005.13.20.1000&ISO"
    assert codes(registry.register(request(stranger, [entry("1", stranger)]))) == ["XDSUnknownPatientId"]
    # an entry about another patient than its submission set's
    assert codes(registry.register(request(IHE_PATIENT, [entry("1", OTHER_PATIENT)]))) == ["XDSPatientIdDoesNotMatch"]


def test_an_entry_uuid_the_registry_holds_is_refused_never_overwritten(registry):
    fixed = f"urn:uuid:{uuid.uuid4()}"
    first = registry.register(request(IHE_PATIENT, [entry("1", IHE_PATIENT, entry_id=fixed)]))
    assert first.status == "Success" and registry.by_uuid[fixed].unique_id
    held = copy.deepcopy(registry.by_uuid[fixed])
    again = registry.register(request(IHE_PATIENT, [entry("2", IHE_PATIENT, entry_id=fixed)]))
    assert codes(again) == ["XDSRegistryMetadataError"] and "entryUUID" in again.errors[0][1]
    assert registry.by_uuid[fixed].unique_id == held.unique_id  # untouched


def test_the_same_document_again_is_another_entry_a_different_one_under_its_id_is_refused(registry):
    unique = "1.2.250.1.999.9.42"
    stored(registry, unique=unique)
    same = registry.register(request(IHE_PATIENT, [entry("1", IHE_PATIENT, unique=unique)]))
    assert same.status == "Success" and sum(s.unique_id == unique for s in registry.by_uuid.values()) == 2
    other = registry.register(request(IHE_PATIENT, [entry("1", IHE_PATIENT, unique=unique, data=b"<other/>")]))
    assert codes(other) == ["XDSNonIdenticalHash"]


@pytest.mark.parametrize("kind", [RPLC, APND, XFRM, "urn:ihe:iti:2007:AssociationType:XFRM_RPLC"])
def test_lifecycle_associations_need_an_approved_entry_of_the_same_patient(registry, kind):
    target = stored(registry)
    ok = registry.register(request(IHE_PATIENT, [entry("2", IHE_PATIENT)], [(kind, "Doc2", target, {})]))
    assert ok.status == "Success", ok.errors
    replaced = kind in (RPLC, "urn:ihe:iti:2007:AssociationType:XFRM_RPLC")
    assert (registry.by_uuid[target].status == ebrim.DEPRECATED) is replaced
    unknown = registry.register(request(IHE_PATIENT, [entry("3", IHE_PATIENT)], [(kind, "Doc3", f"urn:uuid:{uuid.uuid4()}", {})]))
    assert codes(unknown) == ["XDSUnresolvedReferenceException"]
    other = stored(registry, OTHER_PATIENT)
    mismatch = registry.register(request(IHE_PATIENT, [entry("4", IHE_PATIENT)], [(kind, "Doc4", other, {})]))
    assert codes(mismatch) == ["XDSPatientIdDoesNotMatch"]
    if replaced:  # the replaced entry is deprecated: nothing more may target it
        late = registry.register(request(IHE_PATIENT, [entry("5", IHE_PATIENT)], [(APND, "Doc5", target, {})]))
        assert codes(late) == ["XDSRegistryDeprecatedDocumentError"]


def test_folders_and_association_only_submissions_are_what_ihe_allows(registry):
    doc = stored(registry)
    folder = etree.fromstring(etree.tostring(request(IHE_PATIENT, [])))
    rol = folder.find(f"{{{ebrim.RIM}}}RegistryObjectList")
    fol = etree.SubElement(rol, f"{{{ebrim.RIM}}}RegistryPackage", id="Folder01")
    etree.SubElement(fol, f"{{{ebrim.RIM}}}Classification", id="fcl", classificationNode=ebrim.FOLDER_NODE, classifiedObject="Folder01")
    for name, value in (("patientId", IHE_PATIENT), ("uniqueId", "1.2.250.1.999.7.1")):
        etree.SubElement(fol, f"{{{ebrim.RIM}}}ExternalIdentifier", id=f"f-{name}", registryObject="Folder01",
                         identificationScheme=ebrim.FOLDER_IDENTIFIERS[name], value=value)
    for n, (src, tgt) in enumerate((("SubmissionSet01", "Folder01"), ("Folder01", doc)), 1):
        etree.SubElement(rol, f"{{{ebrim.RIM}}}Association", id=f"fa{n}", associationType=ebrim.HAS_MEMBER, sourceObject=src, targetObject=tgt)
    out = registry.register(folder)
    assert out.status == "Success", out.errors
    assert [f.unique_id for f in registry.folders.values()] == ["1.2.250.1.999.7.1"]


def test_the_dmp_keeps_its_own_restrictions_with_their_ids():
    dmp = Registry(1 << 20)
    # DMP-REG-01: its patients are test INS; a patient it was not told of is unknown
    stranger = dmp.register(request(IHE_PATIENT, [entry("1", IHE_PATIENT)]))
    assert "XDSUnknownPatientId" in codes(stranger)
    assert any("XDS-MD-09" in ctx for _, ctx in stranger.errors)  # CI-SIS: the patient is an INS
    good = dmp.register(request(INS, [entry("1", INS)]))
    assert good.status == "Success", good.errors
    # declared patients (a target's [services.dmp] patients) are the only ones it knows
    strict = Registry(1 << 20, patients=("162018885045327^^^&1.2.250.1.213.1.4.10&ISO",))
    assert codes(strict.register(request(INS, [entry("1", INS)]))) == ["XDSUnknownPatientId"]
    # DMP-REG-02: a document that is no XML is not stored by the DMP; an IHE repository takes it
    pdf = b"%PDF-1.4 not xml"
    bad = dmp.provide_set(request(INS, [entry("1", INS, data=pdf)]), {"Doc1": pdf})
    assert codes(bad) == ["XDSRepositoryError"]
    ihe = Registry(1 << 20, profile="ihe", patients=(IHE_PATIENT,))
    assert ihe.provide_set(request(IHE_PATIENT, [entry("1", IHE_PATIENT, data=pdf)]), {"Doc1": pdf}).status == "Success"


def _nist():
    spec = importlib.util.spec_from_file_location("nist_xds", Path(__file__).parents[1] / "bench" / "nist_xds.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_registry_agrees_with_the_nist_xds_test_plans():
    nist = _nist()
    folder = os.environ.get("HARNESS_NIST_TESTKIT") or (nist.CACHE / nist.COMMIT)
    if not (Path(folder) / "tests").is_dir() and not (Path(folder) / "11966").is_dir():
        pytest.skip(f"NIST XDS Toolkit test plans absent ({nist.REPO}@{nist.COMMIT[:12]}): set HARNESS_NIST_TESTKIT "
                    "or run bench/nist_xds.py --git once")
    rows = nist.Runner(nist.locate(str(folder), None)).run()
    run = [r for r in rows if r["outcome"] != "not-run"]
    agree = [r for r in run if r["outcome"] == "agree"]
    assert len(rows) > 250 and len(agree) >= 0.9 * len(run)
    # every expected failure is reproduced with its error code
    assert all(r["outcome"] == "agree" for r in run if r["expected"].startswith("Failure"))
