"""The terminology engine behind the stand-in: versions, compose, display checks, issues, and
what it refuses rather than answer wrongly. Code systems written here for the purpose; the
HL7 terminology ecosystem suite is run by ``bench/tx_ecosystem.py`` (and
``test_tx_ecosystem.py`` when the suite is at hand)."""
import json
import time
import urllib.request

import pytest

from harness.terminology import RemoteTerminology, Snapshot, SnapshotTerminology, TerminologyServer
from harness.terminology.engine import Engine, Params, TxError, version_matches

CS = "http://example.org/cs/colour"
VS = "http://example.org/vs/"


def colours(version: str, extra: str) -> dict:
    return {"resourceType": "CodeSystem", "url": CS, "version": version, "content": "complete", "status": "active",
            "concept": [{"code": "warm", "display": f"Warm ({version})", "property": [{"code": "notSelectable", "valueBoolean": True}],
                         "concept": [{"code": "red", "display": "Red", "designation": [{"language": "fr", "value": "Rouge"}]},
                                     {"code": "orange", "display": "Orange",
                                      "property": [{"code": "status", "valueCode": "retired"}]}]},
                        {"code": "cold", "display": "Cold", "concept": [{"code": extra, "display": extra.title()}]}]}


def vs(name: str, compose: dict, **kw) -> dict:
    return {"resourceType": "ValueSet", "url": VS + name, "version": "1", "status": "active", "compose": compose, **kw}


ENGINE = Engine([
    colours("1.0.0", "blue"), colours("2.0.0", "cyan"),
    vs("all", {"include": [{"system": CS}]}),
    vs("v1", {"include": [{"system": CS, "version": "1.0.0"}]}),
    vs("v1x", {"include": [{"system": CS, "version": "1.x"}]}),
    vs("warm", {"include": [{"system": CS, "filter": [{"property": "concept", "op": "is-a", "value": "warm"}]}]}),
    vs("warm-not-orange", {"include": [{"valueSet": [VS + "warm"]}], "exclude": [{"system": CS, "concept": [{"code": "orange"}]}]}),
    vs("active", {"include": [{"system": CS}], "inactive": False}),
    vs("red-and-warm", {"include": [{"system": CS, "concept": [{"code": "red"}, {"code": "cold"}], "valueSet": [VS + "warm"]}]}),
    vs("missing-import", {"include": [{"valueSet": [VS + "nowhere"]}]}),
    vs("regex", {"include": [{"system": CS, "filter": [{"property": "code", "op": "regex", "value": "((a+)+)+b"}]}]}),
])


def validate(**kw) -> dict:
    values = {k.replace("_", "-"): [v] for k, v in kw.items()}
    return {p["name"]: p for p in ENGINE.validate_vs(Params(values))["parameter"]}


def issue_types(answer: dict) -> list[tuple[str, str]]:
    issues = (answer.get("issues") or {}).get("resource", {}).get("issue", [])
    return [(i["severity"], i["details"]["coding"][0]["code"]) for i in issues]


def codes(expansion: dict) -> set[str]:
    return {c["code"] for c in expansion["expansion"].get("contains", [])}


@pytest.mark.parametrize("pattern, version, matches", [
    ("1.0.x", "1.0.7", True), ("1.0.x", "1.1.0", False), ("1.x", "1.2.0", True), ("1.*", "1.2.3", True),
    ("1.0.0", "1.0.0", True), ("1", "1.0.0", False), ("2.x", "1.0.0", False)])
def test_version_patterns(pattern, version, matches):
    assert version_matches(pattern, version) is matches


def test_versions_side_by_side_the_most_recent_by_default_the_named_one_when_named():
    latest = validate(url=VS + "all", system=CS, code="cyan")
    assert latest["result"]["valueBoolean"] is True and latest["version"]["valueString"] == "2.0.0"
    assert validate(url=VS + "v1", system=CS, code="cyan")["result"]["valueBoolean"] is False  # 1.0.0 has no cyan
    pinned = validate(url=VS + "v1", system=CS, code="blue")
    assert pinned["result"]["valueBoolean"] is True and pinned["display"]["valueString"] == "Blue"
    # a coding naming 1.0.0 against a wildcard include 1.x: that version
    wild = validate(url=VS + "v1x", coding={"system": CS, "version": "1.0.0", "code": "blue"})
    assert wild["result"]["valueBoolean"] is True and wild["version"]["valueString"] == "1.0.0"
    # a coding naming another version than the value set's: refused, and said why
    clash = validate(url=VS + "v1", coding={"system": CS, "version": "2.0.0", "code": "red"})
    assert clash["result"]["valueBoolean"] is False and ("error", "vs-invalid") in issue_types(clash)
    # a version nobody has: "cannot say", flagged for the client
    unknown = validate(url=VS + "all", coding={"system": CS, "version": "9.9", "code": "red"})
    assert unknown["result"]["valueBoolean"] is False and "x-caused-by-unknown-system" in unknown
    # force-system-version and check-system-version
    forced = {p["name"]: p for p in ENGINE.validate_vs(Params({"url": [VS + "all"], "system": [CS], "code": ["red"],
                                                                 "force-system-version": [f"{CS}|1.0.0"]}))["parameter"]}
    assert forced["version"]["valueString"] == "1.0.0"
    with pytest.raises(TxError) as refused:
        ENGINE.expand(Params({"url": [VS + "v1"], "check-system-version": [f"{CS}|2.x"]}))
    assert refused.value.tx_code == "version-error"


def test_compose_filters_included_value_sets_exclusions_and_inactive_codes():
    assert codes(ENGINE.expand(Params({"url": [VS + "warm"]}))) == {"warm", "red", "orange"}
    assert codes(ENGINE.expand(Params({"url": [VS + "warm-not-orange"]}))) == {"warm", "red"}
    assert codes(ENGINE.expand(Params({"url": [VS + "red-and-warm"]}))) == {"red"}  # the intersection
    assert codes(ENGINE.expand(Params({"url": [VS + "active"]}))) == {"warm", "red", "cold", "cyan"}
    assert codes(ENGINE.expand(Params({"url": [VS + "all"], "activeOnly": [True]}))) == {"warm", "red", "cold", "cyan"}
    page = ENGINE.expand(Params({"url": [VS + "all"], "offset": [1], "count": [2]}))
    assert page["expansion"]["total"] == 5 and len(page["expansion"]["contains"]) == 2
    flags = {c["code"]: c for c in ENGINE.expand(Params({"url": [VS + "all"]}))["expansion"]["contains"]}
    assert flags["warm"]["abstract"] is True and flags["orange"]["inactive"] is True
    # an excluded code is a definite "no"; an inactive one in an active-only value set too, said why
    assert validate(url=VS + "warm-not-orange", system=CS, code="orange")["result"]["valueBoolean"] is False
    inactive = validate(url=VS + "active", system=CS, code="orange")
    assert inactive["result"]["valueBoolean"] is False and ("error", "code-rule") in issue_types(inactive)


def test_displays_are_checked_with_their_languages_and_each_problem_is_an_issue():
    good = validate(url=VS + "all", coding={"system": CS, "code": "red", "display": "Rouge"})
    assert good["result"]["valueBoolean"] is True
    bad = validate(url=VS + "all", coding={"system": CS, "code": "red", "display": "Rot"})
    assert bad["result"]["valueBoolean"] is False and issue_types(bad) == [("error", "invalid-display")]
    assert "Rot" in bad["message"]["valueString"]
    lenient = validate(url=VS + "all", coding={"system": CS, "code": "red", "display": "Rot"}, lenient_display_validation=True)
    assert lenient["result"]["valueBoolean"] is True and issue_types(lenient) == [("warning", "invalid-display")]
    french = {p["name"]: p for p in ENGINE.validate_vs(Params({"url": [VS + "all"], "system": [CS], "code": ["red"]}),
                                                       languages=["fr"])["parameter"]}
    assert french["display"]["valueString"] == "Rouge"
    unknown = validate(url=VS + "all", system=CS, code="green")
    assert ("error", "invalid-code") in issue_types(unknown)


def test_a_codeable_concept_is_valid_through_one_of_its_codings():
    cc = {"coding": [{"system": "http://example.org/other", "code": "x"}, {"system": CS, "code": "red"}]}
    ok = validate(url=VS + "warm", codeableConcept=cc)
    assert ok["result"]["valueBoolean"] is True and ok["code"]["valueCode"] == "red"
    # the other coding's system is unknown: said, without failing the concept
    assert issue_types(ok) == [("error", "not-found"), ("information", "this-code-not-in-vs")]
    none = validate(url=VS + "warm", codeableConcept={"coding": [{"system": CS, "code": "cold"}]})
    assert none["result"]["valueBoolean"] is False
    assert issue_types(none) == [("error", "not-in-vs"), ("information", "this-code-not-in-vs")]


def test_what_it_cannot_do_it_refuses_plainly():
    # an included value set it does not hold: no verdict from a part of the value set
    missing = validate(url=VS + "missing-import", system=CS, code="red")
    assert missing["result"]["valueBoolean"] is False and issue_types(missing) == [("error", "not-found")]
    with pytest.raises(TxError) as exc:
        ENGINE.expand(Params({"url": [VS + "missing-import"]}))
    assert exc.value.status == 404
    # a supplement asked for is applied (its designations count as displays); one not held is refused
    with_supplement = Engine([colours("1.0.0", "blue"), vs("all", {"include": [{"system": CS}]}),
                              {"resourceType": "CodeSystem", "url": "http://example.org/sup", "version": "1", "content": "supplement",
                               "supplements": CS, "concept": [{"code": "red", "designation": [{"language": "nl", "value": "Rood"}]}]}])
    dutch = {"url": [VS + "all"], "coding": [{"system": CS, "code": "red", "display": "Rood"}]}
    assert {p["name"]: p for p in with_supplement.validate_vs(Params(dutch))["parameter"]}["result"]["valueBoolean"] is False
    used = with_supplement.validate_vs(Params({**dutch, "useSupplement": ["http://example.org/sup"]}))
    assert {p["name"]: p for p in used["parameter"]}["result"]["valueBoolean"] is True
    with pytest.raises(TxError) as exc:
        with_supplement.expand(Params({"url": [VS + "all"], "useSupplement": ["http://example.org/nowhere"]}))
    assert exc.value.status == 404 and "supplement" in exc.value.text
    # a catastrophic regular expression costs nothing (RE2), a back-reference is refused
    started = time.perf_counter()
    ENGINE.expand(Params({"url": [VS + "regex"]}))
    assert time.perf_counter() - started < 1
    with pytest.raises(TxError) as exc:
        Engine([colours("1.0.0", "blue"), vs("br", {"include": [{"system": CS, "filter": [
            {"property": "code", "op": "regex", "value": "(a)\\1"}]}]})]).expand(Params({"url": [VS + "br"]}))
    assert exc.value.code == "not-supported"


def test_the_stand_in_answers_a_request_carrying_its_own_resources_and_the_client_reads_cannot_say(tmp_path):
    empty = Snapshot("empty")
    empty._build()
    server = TerminologyServer(SnapshotTerminology(empty, as_of="2026-12-01")).start()
    try:
        body = {"resourceType": "Parameters", "parameter": [
            {"name": "url", "valueUri": VS + "warm"}, {"name": "coding", "valueCoding": {"system": CS, "code": "red"}},
            {"name": "tx-resource", "resource": colours("1.0.0", "blue")},
            {"name": "tx-resource", "resource": vs("warm", {"include": [{"system": CS, "filter": [
                {"property": "concept", "op": "is-a", "value": "warm"}]}]})}]}
        req = urllib.request.Request(server.base_url + "ValueSet/$validate-code", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/fhir+json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as res:
            answer = {p["name"]: p for p in json.loads(res.read())["parameter"]}
        assert answer["result"]["valueBoolean"] is True and answer["display"]["valueString"] == "Red"
    finally:
        server.stop()
    # the national server's way of saying "I do not hold this code system": no answer, not a "no"
    (tmp_path / "vs.json").write_text(json.dumps(vs("other", {"include": [{"system": "http://example.org/unheld", "filter": [
        {"property": "concept", "op": "is-a", "value": "x"}]}]})))
    server = TerminologyServer(SnapshotTerminology(Snapshot.load([tmp_path]), as_of="2026-12-01")).start()
    try:
        remote = RemoteTerminology(server.base_url, timeout=5, retries=0)
        answer = remote.validate_code(VS + "other", "http://example.org/unheld", "x")
        assert answer.result is None and answer.error
    finally:
        server.stop()
