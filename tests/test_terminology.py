"""Terminology core: snapshot answers, the remote FHIR client against our stand-in (and its
failures), the cache, the fallback."""
import json
import socket
import time
from pathlib import Path

import pytest

from harness.terminology import (
    BUILTIN_SNAPSHOT,
    CachedTerminology,
    FallbackTerminology,
    PasswordGrant,
    RemoteTerminology,
    Snapshot,
    SnapshotTerminology,
    TerminologyAuthError,
    TerminologyServer,
    TerminologyUnavailable,
    build,
)
from harness import HarnessError
from harness.safety.http import is_loopback

CORPUS = Path(__file__).parents[2] / "shared" / "corpus"
JDV = CORPUS / "ans-testcontenucda" / "jeuxDeValeurs"
NOS = CORPUS / "nos-value-sets"
J07_URL = "https://mos.esante.gouv.fr/NOS/JDV_J07-XdsTypeCode-CISIS/FHIR/JDV-J07-XdsTypeCode-CISIS"
CONF_OID = "urn:oid:2.16.840.1.113883.1.11.10228"
LOINC = "2.16.840.1.113883.6.1"
LOCAL = "1.2.250.1.999.1.9"
corpus = pytest.mark.skipif(not JDV.is_dir(), reason="shared corpus absent (../shared/corpus)")


@pytest.fixture(scope="module")
def builtin():
    return SnapshotTerminology(Snapshot.load([BUILTIN_SNAPSHOT], name="builtin"), as_of="2026-11-24")


@pytest.fixture
def server(builtin):
    srv = TerminologyServer(builtin, users={"alice": "s3cret"}).start()
    yield srv
    srv.stop()


def client(srv, **kw):
    auth = PasswordGrant(srv.token_url, "user-api", "alice", kw.pop("password", "s3cret"), timeout=2)
    return RemoteTerminology(srv.base_url, auth=auth, timeout=kw.pop("timeout", 2), retries=kw.pop("retries", 1), backoff=0.01)


# -- snapshot -------------------------------------------------------------------------


def test_builtin_snapshot_answers_yes_no_and_cannot_say(builtin):
    # complete value set: a member, and a code that is not one
    assert builtin.validate_code(CONF_OID, "2.16.840.1.113883.5.25", "N").result is True
    no = builtin.validate_code(CONF_OID, "2.16.840.1.113883.5.25", "X")
    assert no.result is False and "not in" in no.message
    # partial value set (only the codes the demo uses): absence proves nothing
    partial = builtin.validate_code(J07_URL, LOINC, "18842-5")
    assert partial.result is None and partial.error["kind"] == "partial-snapshot"
    # the same value set by OID, by canonical URL and by name
    for ref in (J07_URL, "urn:oid:1.2.250.1.213.1.1.5.471", "1.2.250.1.213.1.1.5.471"):
        assert builtin.validate_code(ref, LOINC, "11488-4").result is True, ref
    # a value set the snapshot does not hold
    assert builtin.validate_code("urn:oid:1.2.3.4", LOINC, "11488-4").error["kind"] == "unknown-value-set"


def test_builtin_snapshot_lookup_complete_fragment_and_deprecated(builtin):
    assert builtin.lookup(LOCAL, "MOTIF-SUIVI").result is True
    assert builtin.lookup(LOCAL, "NOPE").result is False  # complete code system: really unknown
    assert builtin.lookup(LOINC, "8480-6").display == "Pression artérielle systolique"
    assert builtin.lookup(LOINC, "99999-9").result is None  # LOINC held as a fragment only
    assert builtin.lookup("http://loinc.org", "8480-6").result is True  # OID and URI are one system
    assert builtin.lookup(LOCAL, "MOTIF-ANCIEN").inactive is True
    assert builtin.lookup(LOCAL, "MOTIF-SUIVI").inactive is False


def test_end_of_validity_is_judged_on_the_run_day(tmp_path):
    (tmp_path / "vs.xml").write_text("""<?xml version="1.0" encoding="UTF-8"?>
<RetrieveValueSetResponse xmlns="urn:ihe:iti:svs:2008"><ValueSet id="1.2.250.1.999.5.1" displayName="JDV_Test">
<ConceptList><Concept code="A" codeSystem="1.2.250.1.999.4.1" displayName="A" dateFin="20250101000000"/>
<Concept code="B" codeSystem="1.2.250.1.999.4.1" displayName="B" dateFin=""/></ConceptList></ValueSet></RetrieveValueSetResponse>""")
    snap = Snapshot.load([tmp_path])
    assert SnapshotTerminology(snap, as_of="2024-06-01").validate_code("1.2.250.1.999.5.1", "1.2.250.1.999.4.1", "A").inactive is False
    assert SnapshotTerminology(snap, as_of="2026-11-24").validate_code("1.2.250.1.999.5.1", "1.2.250.1.999.4.1", "A").inactive is True
    assert SnapshotTerminology(snap, as_of="2026-11-24").validate_code("1.2.250.1.999.5.1", "1.2.250.1.999.4.1", "B").inactive is False


def test_bad_snapshot_files_are_listed_never_fatal(tmp_path):
    (tmp_path / "empty.xml").write_bytes(b"")
    (tmp_path / "junk.xml").write_bytes(b"<not-closed")
    (tmp_path / "xxe.xml").write_text('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>')
    (tmp_path / "other.xml").write_text("<html/>")
    (tmp_path / "broken.json").write_text('{"resourceType": "ValueSet", ')
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    (tmp_path / "patient.json").write_text('{"resourceType": "Patient"}')
    (tmp_path / "list.json").write_text("[1, 2]")
    snap = Snapshot.load([tmp_path])
    assert {p["file"].split("/")[-1] for p in snap.problems} == {
        "empty.xml", "junk.xml", "xxe.xml", "other.xml", "broken.json", "deep.json", "patient.json", "list.json"}
    assert all(p["fr"] and p["en"] for p in snap.problems)
    assert snap.value_sets == []


def test_missing_snapshot_folder_is_a_clear_error(tmp_path):
    with pytest.raises(Exception) as exc:
        Snapshot.load([tmp_path / "nowhere"])
    assert "nowhere" in str(exc.value)


def test_snapshot_identity_changes_with_content(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"resourceType": "CodeSystem", "url": "urn:x", "content": "complete", "concept": [{"code": "1"}]}))
    first = Snapshot.load([tmp_path]).sha256
    assert Snapshot.load([tmp_path]).sha256 == first
    (tmp_path / "a.json").write_text(json.dumps({"resourceType": "CodeSystem", "url": "urn:x", "content": "complete", "concept": [{"code": "2"}]}))
    assert Snapshot.load([tmp_path]).sha256 != first


@corpus
def test_official_value_sets_load_with_their_three_empty_files():
    snap = Snapshot.load([JDV, NOS])
    assert len(snap.value_sets) >= 520
    assert sorted(p["file"] for p in snap.problems) == [
        "jeuxDeValeurs/ActPharmacySupplyType.xml", "jeuxDeValeurs/CoverageRoleType.xml", "jeuxDeValeurs/MediaType.xml"]
    t = SnapshotTerminology(snap, as_of="2026-11-24")
    # SVS (OID, urlFichier) and FHIR JSON (canonical, OID designations) name the same things
    assert t.validate_code(J07_URL, LOINC, "11488-4").display == "CR ou fiche de consultation ou de visite"
    classe = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
    assert t.validate_code("urn:oid:1.2.250.1.213.1.1.5.462", "1.2.250.1.213.1.1.4.1", "10").result is True
    assert t.validate_code("urn:oid:1.2.250.1.213.1.1.5.462", classe, "99").result is False
    # a wrong code system for a known code: the answer says where the code lives
    wrong = t.validate_code("urn:oid:1.2.250.1.213.1.1.5.590", "2.16.840.1.113883.5.4", "F")
    assert wrong.result is False and "2.16.840.1.113883.5.1" in wrong.message


# -- remote client against the stand-in -----------------------------------------------


def test_remote_client_asks_by_canonical_names_with_a_token(server, builtin):
    remote = client(server)
    f = FallbackTerminology(remote, builtin, allowed=False)
    yes = f.validate_code("urn:oid:1.2.250.1.213.1.1.5.471", LOINC, "11488-4")
    assert yes.result is True and yes.source["kind"] == "remote" and yes.source["software"]
    assert yes.question["value_set"] == "urn:oid:1.2.250.1.213.1.1.5.471"  # as the document named it
    assert yes.asked == {"value_set": J07_URL, "system": "http://loinc.org", "code": "11488-4"}  # as the server knows it
    assert f.lookup(LOCAL, "NOPE").result is False  # $lookup 404, CodeSystem/$validate-code says false
    assert f.lookup(LOINC, "99999-9").result is None  # the server cannot say
    assert f.lookup(LOCAL, "MOTIF-ANCIEN").inactive is True
    assert server.requests["token"] == 1  # one token for the whole run


def test_expand_and_translate_through_the_server(server):
    remote = client(server)
    e = remote.expand(CONF_OID)
    assert e.total == 6 and {c["code"] for c in e.concepts} == {"L", "M", "N", "R", "U", "V"}
    assert remote.translate("urn:nowhere", LOINC, "1").result is None


def test_every_target_of_a_translation_and_the_implicit_value_set_of_a_code_system_held_whole(tmp_path):
    """$translate answers every target of a source code (snapshot and stand-in alike), and
    ``<system>?fhir_vs`` (FHIR R4 §4.9.8) expands a code system held whole, completely; one held
    as a fragment, as incomplete."""
    system, target, cmap = "http://example.org/cs", "http://example.org/icd", "http://example.org/cm"
    (tmp_path / "b.json").write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in [
        {"resourceType": "CodeSystem", "url": system, "status": "active", "content": "complete", "concept": [{"code": "A"}, {"code": "B"}]},
        {"resourceType": "CodeSystem", "url": target, "status": "active", "content": "fragment", "concept": [{"code": "X1"}, {"code": "X2"}]},
        {"resourceType": "ConceptMap", "url": cmap, "status": "active", "group": [{"source": system, "target": target, "element": [
            {"code": "A", "target": [{"code": "X1", "equivalence": "equivalent"}, {"code": "X2", "equivalence": "narrower"}]},
            {"code": "B", "target": [{"equivalence": "unmatched"}]}]}]}]]}), encoding="utf-8")
    snap = SnapshotTerminology(Snapshot.load([tmp_path], name="t"))
    with TerminologyServer(snap) as srv:
        remote = RemoteTerminology(srv.base_url, timeout=2, retries=0)
        for service in (snap, remote):
            a = service.translate(cmap, system, "A")
            assert a.result is True and [(m["code"], m["relationship"]) for m in a.matches] == [("X1", "equivalent"), ("X2", "narrower")]
            b = service.translate(cmap, system, "B")
            assert b.result is False
            whole = service.expand(f"{system}?fhir_vs")
            assert whole.complete and sorted(c["code"] for c in whole.concepts) == ["A", "B"]
        assert snap.expand(f"{target}?fhir_vs").complete is False
        with pytest.raises(HarnessError) as refused:  # the stand-in does not list "all the codes" of a fragment
            remote.expand(f"{target}?fhir_vs")
        assert "fragment" in refused.value.messages["en"]


def test_refused_credentials_are_an_auth_error(server):
    with pytest.raises(TerminologyAuthError) as exc:
        client(server, password="wrong").lookup(LOCAL, "MOTIF-SUIVI")
    assert "token refused" in exc.value.messages["en"] and "s3cret" not in str(exc.value.messages)


def test_server_refusing_the_bearer_is_an_auth_error_after_one_renewal(server):
    server.faults = {"reject-bearer"}
    with pytest.raises(TerminologyAuthError):
        client(server).lookup(LOCAL, "MOTIF-SUIVI")
    assert server.requests["token"] == 2  # renewed once, then gave up


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("fault, kind", [("error500", "http"), ("garbage", "garbage"), ("cut", "unreachable")])
def test_server_failures_are_typed(server, fault, kind):
    server.faults = {fault}
    with pytest.raises(TerminologyUnavailable) as exc:
        client(server).lookup(LOCAL, "MOTIF-SUIVI")
    assert exc.value.kind == kind


def test_a_fault_may_be_given_to_one_operation_and_each_answer_says_its_cache_header(server):
    """The stand-in's ``op_faults`` (one operation's fault instead of the others') and its
    Cache-Control per operation, recorded with each exchange: what the consumption scenario's
    failing and answering phases rest on."""
    remote = client(server, retries=0, timeout=0.5)
    remote.server()  # the server's identity, asked once, before the faults
    server.faults = {"error500"}
    server.op_faults = {"CodeSystem/$lookup": "not-found", "ValueSet/$expand": "error503", "ValueSet/$validate-code": "stall"}
    server.cache_control = {"ValueSet/$expand": "no-store", "*": "max-age=60"}
    for call, kind in ((lambda: remote.lookup(LOCAL, "MOTIF-SUIVI"), "http"), (lambda: remote.expand(CONF_OID), "http"),
                       (lambda: remote.validate_code(CONF_OID, LOCAL, "MOTIF-SUIVI"), "timeout")):
        with pytest.raises(TerminologyUnavailable) as exc:
            call()
        assert exc.value.kind == kind
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "held" not in server.journal.exchanges[-1].facts:
        time.sleep(0.02)
    asked = {ex.facts["op"]: ex for ex in server.journal.exchanges if ex.facts.get("op") not in (None, "metadata")}
    met = {op: (ex.http_status, ex.facts.get("fault")) for op, ex in asked.items()}
    assert {op: met.pop(op) for op in server.op_faults} == {
        "CodeSystem/$lookup": (404, "not-found"), "ValueSet/$expand": (503, "error503"), "ValueSet/$validate-code": (0, "stall")}
    assert met and set(met.values()) == {(500, "error500")}  # the client's other questions met the fault for every operation
    assert asked["ValueSet/$validate-code"].facts["ended_by"] == "client" and asked["ValueSet/$validate-code"].facts["held"] < 3
    server.faults, server.op_faults = set(), {}
    assert remote.lookup(LOCAL, "MOTIF-SUIVI").display
    assert server.journal.exchanges[-1].facts["cache_control"] == "max-age=60"


def test_500_is_retried_before_giving_up(server):
    server.faults = {"error500"}
    with pytest.raises(TerminologyUnavailable):
        client(server, retries=2).server()
    assert server.requests["metadata"] == 3  # first try + 2 retries (urllib3, with backoff)


def test_slow_server_times_out(server):
    server.faults, server.delay = {"slow"}, 2.0
    start = time.monotonic()
    with pytest.raises(TerminologyUnavailable) as exc:
        client(server, timeout=0.3, retries=0).server()
    assert exc.value.kind == "timeout" and time.monotonic() - start < 1.9


def test_down_server_is_unreachable():
    remote = RemoteTerminology(f"http://127.0.0.1:{_free_port()}/fhir/", timeout=1, retries=0)
    with pytest.raises(TerminologyUnavailable) as exc:
        remote.lookup(LOCAL, "MOTIF-SUIVI")
    assert exc.value.kind == "unreachable"


# -- fallback and cache ---------------------------------------------------------------


def test_without_permission_an_outage_answers_nothing(builtin):
    remote = RemoteTerminology(f"http://127.0.0.1:{_free_port()}/fhir/", timeout=1, retries=0)
    a = FallbackTerminology(remote, builtin, allowed=False).lookup(LOCAL, "MOTIF-SUIVI")
    assert a.result is None and a.source["kind"] == "none" and "fallback = true" in a.error["en"]


def test_with_permission_the_snapshot_answers_and_says_why(builtin):
    remote = RemoteTerminology(f"http://127.0.0.1:{_free_port()}/fhir/", timeout=1, retries=0)
    f = FallbackTerminology(remote, builtin, allowed=True, breaker=2)
    answers = [f.lookup(LOCAL, "MOTIF-SUIVI") for _ in range(5)]
    assert all(a.result is True and a.fallback["kind"] == "unreachable" and a.source["kind"] == "snapshot" for a in answers)
    assert remote.calls == 2  # the breaker opened after two failures: no more attempts this run


def test_each_distinct_question_reaches_the_server_once(server):
    cached = CachedTerminology(FallbackTerminology(client(server), None, allowed=False))
    for _ in range(3):
        cached.lookup(LOCAL, "MOTIF-SUIVI")
        cached.validate_code(CONF_OID, "2.16.840.1.113883.5.25", "N")
    assert server.requests["CodeSystem/$lookup"] == 1 and server.requests["ValueSet/$validate-code"] == 1
    assert cached.stats.to_dict() == {"memory_hits": 4, "disk_hits": 0, "asked": 2}


def test_disk_cache_serves_the_next_run_and_expires(server, tmp_path):
    clock = [1000.0]

    def run():
        return CachedTerminology(FallbackTerminology(client(server), None, allowed=False), server_id=server.base_url,
                                 disk=tmp_path, ttl_seconds=3600, clock=lambda: clock[0])

    first = run().lookup(LOCAL, "MOTIF-SUIVI")
    assert first.cache is None and server.requests["CodeSystem/$lookup"] == 1
    again = run().lookup(LOCAL, "MOTIF-SUIVI")
    assert again.cache["from"] == "disk" and again.source == first.source and server.requests["CodeSystem/$lookup"] == 1
    clock[0] += 7200  # past its time: asked again
    assert run().lookup(LOCAL, "MOTIF-SUIVI").cache is None and server.requests["CodeSystem/$lookup"] == 2
    for f in tmp_path.rglob("*.json"):
        f.write_text("{damaged")
    assert run().lookup(LOCAL, "MOTIF-SUIVI").result is True and server.requests["CodeSystem/$lookup"] == 3


def test_fallback_answers_are_never_kept_on_disk(builtin, tmp_path):
    remote = RemoteTerminology(f"http://127.0.0.1:{_free_port()}/fhir/", timeout=1, retries=0)
    cached = CachedTerminology(FallbackTerminology(remote, builtin, allowed=True), server_id="x", disk=tmp_path, ttl_seconds=3600)
    assert cached.lookup(LOCAL, "MOTIF-SUIVI").fallback
    assert not list(tmp_path.rglob("*.json"))


def test_build_offline_never_asks_a_remote_server():
    setup = build({"server": "https://smt.esante.gouv.fr/fhir/"}, offline=True, resolve_url=lambda u: u, secret=lambda n: None,
                  is_loopback=is_loopback)
    assert setup.remote is None and setup.mode == "offline-snapshot" and "offline" in setup.notes[0]["en"]


def test_build_refuses_a_token_url_without_credentials():
    with pytest.raises(Exception) as exc:
        build({"server": "https://smt.example/fhir/", "token_url": "https://idp.example/token"}, offline=False,
              resolve_url=lambda u: u, secret=lambda n: None, is_loopback=is_loopback)
    assert "smt_username" in str(exc.value)


def test_concurrent_duplicates_are_asked_once(server):
    from concurrent.futures import ThreadPoolExecutor

    server.latency = 0.05
    cached = CachedTerminology(FallbackTerminology(client(server), None, allowed=False))
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: cached.lookup(LOCAL, "MOTIF-SUIVI"), range(16)))
    assert all(a.result is True for a in answers)
    assert server.requests["CodeSystem/$lookup"] == 1 and cached.stats.asked == 1


def test_a_system_the_server_lacks_costs_one_extra_request_once(server):
    remote = client(server)
    for code in ("99999-1", "99999-2", "99999-3"):
        assert remote.lookup(LOINC, code).error["kind"] == "code-system-not-held"
    assert server.requests["CodeSystem/$lookup"] == 3 and server.requests["CodeSystem/$validate-code"] == 1


# -- the SMT as the ANS documents it ---------------------------------------------------------

# ansforge/finess, docs/referentiels/terminologies-smt.md @ 98eee690 ("Interroger un code particulier"):
# the request a software sends the SMT, and the answer the SMT gives, for TRE-R397 code 377
SMT_R397 = "https://smt.esante.gouv.fr/fhir/CodeSystem/tre-r397-categorie-entite-geographique-exercice"
SMT_DOCUMENTED_ANSWER = {"resourceType": "Parameters", "parameter": [
    {"name": "code", "valueCode": "377"},
    {"name": "display", "valueString": "Etablissement Expérimental pour Enfance Handicapée"},
    {"name": "name", "valueString": "TreR397CategorieEntiteGeographiqueExercice"},
    {"name": "system", "valueUri": SMT_R397},
    {"name": "version", "valueString": "20260601120000"},
    {"name": "property", "part": [{"name": "code", "valueCode": "inactive"}, {"name": "value", "valueBoolean": False}]},
    {"name": "property", "part": [{"name": "code", "valueCode": "parent"}, {"name": "value", "valueCode": "4107"}]},
    {"name": "designation", "part": [{"name": "language", "valueCode": "fr-FR"},
                                     {"name": "use", "valueCoding": {"system": "http://snomed.info/sct", "code": "900000000000013009"}},
                                     {"name": "value", "valueString": "Etab.Expér.Enf.Hand."}]},
    {"name": "designation", "part": [{"name": "language", "valueCode": "fr-FR"},
                                     {"name": "use", "valueCoding": {"system": "http://terminology.hl7.org/CodeSystem/hl7TermMaintInfra",
                                                                     "code": "preferredForLanguage"}},
                                     {"name": "value", "valueString": "Etablissement Expérimental pour Enfance Handicapée"}]},
]}


def test_the_stand_in_answers_the_smt_request_the_ans_documents_as_the_smt_answers_it(tmp_path):
    """The request of the ANS's own SMT documentation (GET ``CodeSystem/$lookup?system=…&code=377``,
    ``Accept: application/fhir+json``, or ``_format=json``) sent to the stand-in holding that code
    system: every parameter of the SMT's documented answer is there, with the same value, and
    nothing is answered that the SMT does not."""
    import requests

    concept = {"code": "377", "display": "Etablissement Expérimental pour Enfance Handicapée",
               "designation": [{"language": "fr-FR", "use": {"system": "http://snomed.info/sct", "code": "900000000000013009"},
                                "value": "Etab.Expér.Enf.Hand."},
                               {"language": "fr-FR", "use": {"system": "http://terminology.hl7.org/CodeSystem/hl7TermMaintInfra",
                                                             "code": "preferredForLanguage"},
                                "value": "Etablissement Expérimental pour Enfance Handicapée"}],
               "property": [{"code": "parent", "valueCode": "4107"}]}
    (tmp_path / "r397.json").write_text(json.dumps({
        "resourceType": "CodeSystem", "id": "tre-r397-categorie-entite-geographique-exercice", "url": SMT_R397,
        "version": "20260601120000", "name": "TreR397CategorieEntiteGeographiqueExercice", "status": "active", "content": "fragment",
        "property": [{"code": "parent", "type": "code"}], "concept": [{"code": "4107", "display": "Etablissements pour enfants"}, concept]},
        ensure_ascii=False), encoding="utf-8")
    with TerminologyServer(SnapshotTerminology(Snapshot.load([tmp_path], name="smt-r397"))) as srv:
        for how in ({"headers": {"Accept": "application/fhir+json"}}, {"params_extra": {"_format": "json"}}):
            params = {"system": SMT_R397, "code": "377", **how.get("params_extra", {})}
            res = requests.get(srv.base_url + "CodeSystem/$lookup", params=params, headers=how.get("headers", {}), timeout=5)
            assert res.status_code == 200 and res.headers["Content-Type"].startswith("application/fhir+json")
            got = res.json()["parameter"]
            for documented in SMT_DOCUMENTED_ANSWER["parameter"]:
                assert documented in got, (documented, got)
            extra = [p for p in got if p not in SMT_DOCUMENTED_ANSWER["parameter"]]
            assert extra == [{"name": "abstract", "valueBoolean": False}], extra  # FHIR R4 $lookup's own, which the SMT leaves out
