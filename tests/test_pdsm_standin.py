"""The PDSm stand-in over HTTPS: ITI-65 publishes (JSON and XML) atomically and answers as MHD
says; ITI-67/68/66 find, page and return what was published; a replacement supersedes; each
hostile or broken bundle is refused with its rule, recorded, and the service keeps serving;
behind the DMP's store, a document published by MHD is found through XDS and the reverse."""
import base64
import copy
import json

import pytest
import requests
from fhir.resources.R4B.bundle import Bundle

from harness_demo.dmp_client import DmpClient
from harness_demo.patients import PATIENTS
from harness_dmp.simulator import DmpSimulator
from harness_pdsm.standin import PdsmStandIn
from harness_xds import registry
from tests.mhd_support import bundle, documents

INS = "urn:oid:1.2.250.1.213.1.4.10"
JSON = "application/fhir+json"


@pytest.fixture
def standin():
    s = PdsmStandIn(max_request=4 * 1024 * 1024).start()
    yield s
    s.stop()


def client(s) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(s.credentials / "ca.pem")
    return session


def publish(s, b, content_type=JSON, data=None):
    return client(s).post(s.base_url, data=data if data is not None else json.dumps(b), headers={"Content-Type": content_type}, timeout=20)


def search(s, kind="DocumentReference", **params):
    params.setdefault("patient.identifier", f"{INS}|{PATIENTS[0].ins}")
    params.setdefault("status", "current")
    return client(s).get(f"{s.base_url}{kind}", params=params, headers={"Accept": JSON}, timeout=20)


def issues(res) -> list[str]:
    body = res.json()
    assert body["resourceType"] == "OperationOutcome", body
    return [i.get("diagnostics", "") + " " + (i.get("details") or {}).get("text", "") for i in body["issue"]]


def test_a_conformant_publication_is_stored_and_answered_as_mhd_says(standin):
    b = bundle()
    res = publish(standin, b)
    assert res.status_code == 200, res.text
    answer = res.json()
    Bundle.model_validate(answer)
    assert answer["type"] == "transaction-response" and len(answer["entry"]) == len(b["entry"])  # one per entry, in order
    assert all(e["response"]["status"] == "201 Created" for e in answer["entry"])
    assert answer["entry"][1]["response"]["location"].startswith("DocumentReference/")
    ex = standin.journal.exchanges[-1]
    assert ex.facts["transaction"] == "ITI-65" and ex.facts["outcome"] == "stored" and len(ex.facts["stored"]) == 2


def test_xml_is_accepted_as_json_is(standin):
    from fhir.resources.R4B.bundle import Bundle as Model

    xml = Model.model_validate(bundle()).model_dump_xml()
    res = publish(standin, None, "application/fhir+xml", data=xml)
    assert res.status_code == 200, res.text
    found = search(standin, _format="xml")
    assert found.status_code == 200 and found.headers["Content-Type"].startswith("application/fhir+xml")
    assert b"<DocumentReference" in found.content


def test_what_was_published_is_found_paged_read_and_retrieved(standin):
    sent = documents()
    assert publish(standin, bundle(sent)).status_code == 200
    res = search(standin)
    found = res.json()
    Bundle.model_validate(found)
    assert found["type"] == "searchset" and found["total"] == 2
    assert search(standin, type=f"http://loinc.org|{found['entry'][0]['resource']['type']['coding'][0]['code']}").json()["total"] == 2
    assert search(standin, type="http://loinc.org|00000-0").json()["total"] == 0
    # a token's system by its OID or its URI: the structured document's format (TRE_A06)
    one = search(standin, format="urn:oid:1.2.250.1.213.1.1.4.2.282|urn:asip:ci-sis:2010").json()
    assert one["total"] == 1 and one["entry"][0]["resource"]["content"][0]["format"]["system"].startswith("https://mos.esante.gouv.fr/NOS/TRE_A06")
    page = search(standin, _count="1").json()
    assert len(page["entry"]) == 1 and any(link["relation"] == "next" for link in page["link"])
    nxt = client(standin).get(next(link["url"] for link in page["link"] if link["relation"] == "next"), timeout=20).json()
    assert len(nxt["entry"]) == 1 and nxt["entry"][0]["resource"]["id"] != page["entry"][0]["resource"]["id"]
    urls = [e["resource"]["content"][0]["attachment"]["url"] for e in found["entry"]]
    retrieved = [client(standin).get(u, timeout=20).content for u in urls]
    assert sorted(retrieved) == sorted(sent)  # ITI-68: the bytes published
    as_binary = client(standin).get(urls[0], headers={"Accept": JSON}, timeout=20).json()
    assert as_binary["resourceType"] == "Binary" and base64.b64decode(as_binary["data"]) in sent
    read = client(standin).get(f"{standin.base_url}DocumentReference/{found['entry'][0]['resource']['id']}", timeout=20)
    assert read.status_code == 200 and read.json()["id"] == found["entry"][0]["resource"]["id"]
    lists = search(standin, "List", code="submissionset").json()
    assert lists["total"] == 1 and len(lists["entry"][0]["resource"]["entry"]) == 2


def test_a_search_without_the_status_or_the_patient_is_refused_and_an_unknown_parameter_said(standin):
    assert publish(standin, bundle()).status_code == 200
    no_status = client(standin).get(f"{standin.base_url}DocumentReference", params={"patient.identifier": f"{INS}|{PATIENTS[0].ins}"}, timeout=20)
    assert no_status.status_code == 400 and "status" in issues(no_status)[0]
    no_patient = client(standin).get(f"{standin.base_url}DocumentReference", params={"status": "current"}, timeout=20)
    assert no_patient.status_code == 400
    odd = search(standin, **{"author.given": "X"}).json()
    assert odd["total"] == 2 and odd["entry"][-1]["search"]["mode"] == "outcome"
    assert standin.journal.exchanges[-1].facts["ignored"] == ["author.given"]


def test_a_replacement_supersedes_the_document_it_replaces(standin):
    assert publish(standin, bundle()).status_code == 200
    old = search(standin).json()["entry"][0]["resource"]
    b = bundle(documents(first=201)[:1])
    b["entry"][1]["resource"]["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{old['id']}"}}]
    res = publish(standin, b)
    assert res.status_code == 200, res.text
    current = {e["resource"]["id"] for e in search(standin).json()["entry"]}
    superseded = {e["resource"]["id"] for e in search(standin, status="superseded").json()["entry"]}
    assert old["id"] in superseded and old["id"] not in current and len(current) == 2
    unknown = bundle(documents(first=301)[:1])
    unknown["entry"][1]["resource"]["relatesTo"] = [{"code": "replaces", "target": {"reference": "DocumentReference/0f0e0d0c-0000-4000-8000-000000000000"}}]
    refused = publish(standin, unknown)
    assert refused.status_code == 422 and any("XDSUnresolvedReferenceException" in i for i in issues(refused))


def _deep(n):
    return '{"resourceType":"Bundle","type":"transaction","entry":[' + '{"a":[' * n + "1" + "]}" * n + "]}"


HOSTILE = {
    # what is sent: (the bundle changed, raw data, content type) -> (HTTP status, what the answer names)
    "hash that lies": (lambda b: b["entry"][1]["resource"]["content"][0]["attachment"].update(hash="2jmj7l5rSw0yVb/vlWAYkK/YBwk="), None, JSON,
                       422, "MHD-65-06"),
    "Binary that is no document": (lambda b: (b["entry"][2]["resource"].update(data=base64.b64encode(b"%PDF-1.4 not xml").decode()),
                                              b["entry"][1]["resource"]["content"][0]["attachment"].update(
                                                  hash=base64.b64encode(__import__("hashlib").sha1(b"%PDF-1.4 not xml").digest()).decode(), size=16)),
                                   None, JSON, 422, "XDSRepositoryError"),
    "wrong reference": (lambda b: b["entry"][0]["resource"]["entry"].append({"item": {"reference": "urn:uuid:nowhere"}}), None, JSON, 422, "MHD-65-07"),
    "production INS": (lambda b: [e["resource"]["subject"]["identifier"].update(system="urn:oid:1.2.250.1.213.1.4.8")
                                  for e in b["entry"] if "subject" in e["resource"]], None, JSON, 422, "XDSUnknownPatientId"),
    "not FHIR": (lambda b: b["entry"][1]["resource"].update(unknownElement=1), None, JSON, 400, "unknownElement"),
    "not a transaction": (lambda b: b.update(type="collection"), None, JSON, 422, "MHD-65-01"),
    "too deep": (None, _deep(5000), JSON, 400, "64"),
    "external entity": (None, '<?xml version="1.0"?><!DOCTYPE b [<!ENTITY x SYSTEM "file:///etc/passwd">]><Bundle xmlns="http://hl7.org/fhir">&x;</Bundle>',
                        "application/fhir+xml", 400, ""),
    "not FHIR media": (None, "hello", "text/plain", 415, "text/plain"),
}


def test_a_bundle_over_the_limit_is_refused_at_its_headers_and_recorded(standin):
    # 5 MiB announced (the limit is 4): answered before the body is read (a client using
    # "Expect: 100-continue" waits for it), its first bytes kept
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=str(standin.credentials / "ca.pem"))
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", standin.port), timeout=5), server_hostname="127.0.0.1") as tls:
        tls.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: 5242880\r\n\r\n" + b"{" * 70000)
        answer = b""
        while b"OperationOutcome" not in answer:
            chunk = tls.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"OperationOutcome" in answer
    ex = standin.journal.exchanges[-1]
    assert ex.http_status == 413 and 0 < len(ex.request) <= 70000
    assert publish(standin, bundle()).status_code == 200


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_each_hostile_or_broken_publication_is_refused_recorded_and_survived(standin, case):
    change, raw, media, status, named = HOSTILE[case]
    b = None
    if change is not None:
        b = copy.deepcopy(bundle())
        change(b)
    res = publish(standin, b, media, data=raw)
    assert res.status_code == status, (res.status_code, res.text[:500])
    if named:
        assert any(named in i for i in issues(res)), issues(res)
    assert search(standin).json()["total"] == 0  # nothing stored: atomic
    refused = [ex for ex in standin.journal.exchanges if ex.http_status == status]
    assert refused and refused[-1].request[:10] == (raw.encode() if isinstance(raw, str) else json.dumps(b).encode())[:10]
    assert publish(standin, bundle()).status_code == 200  # still serving


def test_behind_the_dmp_a_document_published_by_mhd_is_found_through_xds_and_the_reverse():
    dmp = DmpSimulator().start()
    registry.share("dmp", dmp.registry)
    pdsm = PdsmStandIn(store="dmp").start()
    try:
        # MHD -> XDS: published by ITI-65, found by ITI-18 (the demo's XDS client, over SOAP with its VIHF)
        b = bundle(documents(first=401)[:1])
        assert publish(pdsm, b).status_code == 200
        xds = DmpClient(dmp.base_url, dmp.credentials, set(), "3.2.1")
        unique = b["entry"][1]["resource"]["masterIdentifier"]
        unique_id = unique["value"] if not unique["system"].startswith("urn:oid:") else f"{unique['system'][8:]}^{unique['value']}"
        assert unique_id in xds._find()
        # XDS -> MHD: fed by ITI-41, found by ITI-67 and retrieved by ITI-68
        assert xds.share(PATIENTS[0], "1.2.250.1.213.1.4.10")["state"] == "done"
        fed = [s for s in dmp.registry.by_uuid.values() if s.unique_id not in (unique_id,)]
        assert len(fed) == 1
        found = {e["resource"]["id"]: e["resource"] for e in search(pdsm).json()["entry"]}
        assert fed[0].entry_uuid.removeprefix("urn:uuid:") in found and len(found) == 2
        url = found[fed[0].entry_uuid.removeprefix("urn:uuid:")]["content"][0]["attachment"]["url"]
        assert client(pdsm).get(url, timeout=20).content == fed[0].data
    finally:
        pdsm.stop()
        registry.unshare("dmp", dmp.registry)
        dmp.stop()


def test_without_its_store_the_stand_in_says_so():
    pdsm = PdsmStandIn(store="dmp").start()
    try:
        res = publish(pdsm, bundle())
        assert res.status_code == 503 and "dmp" in issues(res)[0]
    finally:
        pdsm.stop()


def patch(s, target, operations, media="application/json-patch+json"):
    return client(s).patch(f"{s.base_url}{target}", data=json.dumps(operations), headers={"Content-Type": media, "Accept": JSON}, timeout=20)


def test_flow_03_updates_status_confidentiality_and_archiving_and_nothing_else(standin):
    b = bundle()
    assert publish(standin, b).status_code == 200
    dr = search(standin).json()["entry"][0]["resource"]
    unique = f'{dr["masterIdentifier"]["system"]}|{dr["masterIdentifier"]["value"]}'
    masked = {"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument",
                          "code": "MASQUE_PS"}]}
    # conditional on the business identifier (PDSm flow 03), JSON Patch (RFC 6902)
    res = patch(standin, f"DocumentReference?identifier={unique}",
                [{"op": "add", "path": "/securityLabel/-", "value": masked},
                 {"op": "add", "path": "/extension", "value": [{"url": "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-isarchived",
                                                                "valueBoolean": True}]}])
    assert res.status_code == 200, res.text
    assert res.json()["meta"]["versionId"] == "2" and res.headers["ETag"] == 'W/"2"'
    assert masked["coding"][0]["code"] in {c["coding"][0]["code"] for c in res.json()["securityLabel"]}
    assert res.json()["extension"][0]["valueBoolean"] is True
    held = next(s for s in standin.own.by_uuid.values() if s.entry_uuid.endswith(dr["id"]))
    assert "MASQUE_PS" in ebrim_codes(held.element) and held.version == 2  # the XDS entry itself (an ITI-18 sees it)
    # status: superseded, by id
    res = patch(standin, f"DocumentReference/{dr['id']}", [{"op": "replace", "path": "/status", "value": "superseded"}])
    assert res.status_code == 200 and res.json()["status"] == "superseded"
    assert dr["id"] in {e["resource"]["id"] for e in search(standin, status="superseded").json()["entry"]}
    # anything else: 405, as the guide says; the guide's own example path (not an RFC 6901 pointer): 422
    assert patch(standin, f"DocumentReference/{dr['id']}", [{"op": "add", "path": "/description", "value": "x"}]).status_code == 405
    guide_path = '/extension[url:"https://interop.esante.gouv.fr/ig/fhir/pdsm/SearchParameter/PDSm-isArchived"]/valueBoolean'
    assert patch(standin, f"DocumentReference/{dr['id']}", [{"op": "replace", "path": guide_path, "value": "true"}]).status_code == 422
    assert patch(standin, f"DocumentReference/{dr['id']}", [], media="application/fhir+json").status_code == 415
    assert patch(standin, "DocumentReference?identifier=nowhere", [{"op": "replace", "path": "/status", "value": "current"}]).status_code == 404
    assert patch(standin, f"DocumentReference/{dr['id']}", [{"op": "replace", "path": "/status", "value": "bogus"}]).status_code == 422


def ebrim_codes(element) -> set[str]:
    from harness_xds import ebrim

    return {c.code for c in ebrim.read_object(element, ebrim.DE_SCHEMES, ebrim.DE_IDENTIFIERS).coded("confidentialityCode")}


def test_a_folder_is_not_kept_and_its_entry_says_so(standin):
    b = bundle()
    b["entry"].append({"fullUrl": "urn:uuid:5a2c3e0b-0000-4000-8000-000000000001", "request": {"method": "POST", "url": "List"},
                       "resource": {"resourceType": "List", "status": "current", "mode": "working",
                                    "code": {"coding": [{"system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes", "code": "folder"}]}}})
    res = publish(standin, b)
    assert res.status_code == 200, res.text
    *documents, folder = res.json()["entry"]
    assert [i["details"]["text"] for i in folder["response"]["outcome"]["issue"]] == ["PartialFolderContentNotProcessed"]
    assert not any("outcome" in e["response"] for e in documents)  # the others' entries carry no warning
