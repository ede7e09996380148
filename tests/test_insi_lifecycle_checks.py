"""The INS lifecycle's checks (harness_ins.lifecycle) on records written here: what cannot be
proven is said so (a software whose answer does not say what its user saw: MANUAL_PENDING; a
person it emits nowhere: INCONCLUSIVE), never a PASS; too many calls to a down INSi: a FAIL."""
import hashlib
import json

from harness.running.context import Artefact
from harness_ins.insi import LIFECYCLE_CASES
from harness_ins.lifecycle import check_qualification, check_unavailable
from tests.checking import run

DOWN = next(c for c in LIFECYCLE_CASES if c.expected == "unavailable")


def _inputs(calls: int, answer: dict | None) -> tuple[dict, callable]:
    store: dict[str, bytes] = {}

    def put(name: str, value) -> Artefact:
        data = json.dumps(value).encode()
        digest = hashlib.sha256(data).hexdigest()
        store[digest] = data
        return Artefact(digest, len(data), "application/json", name)

    asked = {"birth_date": DOWN.traits["birth_date"], "sex": DOWN.traits["sex"], "birth_name": DOWN.traits["birth_name"]}
    inputs = {
        "insi.cases": put("insi.cases", {"cases": [{**DOWN.asked(), "expected": DOWN.expected}], "max_tries": 3}),
        "insi.session": put("insi.session", {"calls": [{"n": n, "phase": "down", "outcome": "unavailable", "asked": asked}
                                                       for n in range(1, calls + 1)], "dmp": None}),
        "insi.answers": put("insi.answers", {"down": {"registered": [answer] if answer else []}}),
    }
    return inputs, store.__getitem__


def test_a_software_whose_answer_does_not_say_what_its_user_saw_leaves_it_to_a_person():
    inputs, load = _inputs(3, None)
    verdict, checks, findings = run(check_unavailable, inputs, load=load)
    assert verdict.value == "MANUAL_PENDING" and findings == []


def test_too_many_calls_and_nothing_said_are_two_findings_of_the_rule():
    inputs, load = _inputs(9, {"ref": "unavailable", "status": "PROV", "message": ""})
    verdict, checks, findings = run(check_unavailable, inputs, load=load)
    assert verdict.value == "FAIL"
    assert sorted(f.location for f in findings) == ["unavailable: insi.answers", "unavailable: insi.session"]
    assert {f.rule for f in findings} == {"INSI-06"}


def test_bounded_calls_and_the_user_told_pass():
    inputs, load = _inputs(3, {"ref": "unavailable", "status": "PROV", "message": "INSi ne répond pas"})
    verdict, checks, findings = run(check_unavailable, inputs, load=load)
    assert verdict.value == "PASS" and findings == []


def test_a_person_the_software_emits_nowhere_is_inconclusive_not_a_pass():
    case = next(c for c in LIFECYCLE_CASES if c.ref == "found")
    inputs, load = _inputs(0, None)
    data = json.dumps({"cases": [{**case.asked(), "expected": case.expected}], "max_tries": 3}).encode()
    digest = hashlib.sha256(data).hexdigest()
    inputs["insi.cases"] = Artefact(digest, len(data), "application/json", "insi.cases")
    verdict, checks, findings = run(check_qualification, inputs, load=lambda d: data if d == digest else load(d))
    assert verdict.value == "INCONCLUSIVE" and findings == []
    assert "found" in checks[0].reasons[0].render("en")
