"""Verdict derivation: nothing evaluated is never PASS, a crash is ERROR, FAIL dominates."""
from harness import Evaluation, Severity, Verdict
from harness.context import Artefact
from harness.runner import evaluate
from harness.verdicts import combine

SCENARIO = {"id": "s", "requirements": ["R-1"], "checks": ["c"]}


def _run(check, inputs=None, collect=None):
    return evaluate(SCENARIO, inputs or {}, lambda d: b"{}", {"product": {}}, {"c": check}, collect or [])


def test_combine_precedence():
    assert combine([]) is Verdict.NOT_RUN
    assert combine([Verdict.PASS, Verdict.PASS]) is Verdict.PASS
    assert combine([Verdict.PASS, Verdict.INCONCLUSIVE]) is Verdict.INCONCLUSIVE
    assert combine([Verdict.ERROR, Verdict.INCONCLUSIVE]) is Verdict.ERROR
    assert combine([Verdict.ERROR, Verdict.FAIL, Verdict.PASS]) is Verdict.FAIL
    assert combine([Verdict.MANUAL_PENDING, Verdict.PASS]) is Verdict.MANUAL_PENDING


def test_evaluation_verdicts():
    ev = Evaluation("R-1")
    assert ev.verdict is Verdict.INCONCLUSIVE  # evaluated nothing
    ev.check(True, rule="X-1", location="here", fr="fr", en="en")
    assert ev.verdict is Verdict.PASS and ev.findings == []
    ev.check(False, rule="X-2", location="there", fr="non", en="no", severity=Severity.WARNING)
    assert ev.verdict is Verdict.PASS  # a warning does not fail
    ev.check(False, rule="X-3", location="elsewhere", fr="non", en="no")
    assert ev.verdict is Verdict.FAIL
    f = ev.findings[-1]
    assert (f.rule, f.requirement, f.location, f.message) == ("X-3", "R-1", "elsewhere", {"fr": "non", "en": "no"})
    ev2 = Evaluation("R-1")
    ev2.manual_pending(fr="à faire", en="to do")
    assert ev2.verdict is Verdict.MANUAL_PENDING


def test_a_check_that_asserts_nothing_is_inconclusive_with_a_reason():
    verdict, steps, findings = _run(lambda ctx, ev: None)
    assert verdict == "INCONCLUSIVE"
    assert steps[0]["reasons"][0]["en"].startswith("No assertion was evaluated")


def test_a_crashing_check_is_error_not_a_crash():
    def boom(ctx, ev):
        ev.check(True, rule="X", location="l", fr="f", en="e")
        raise ZeroDivisionError("bad")

    verdict, steps, _ = _run(boom)
    assert verdict == "ERROR"
    assert "ZeroDivisionError" in steps[0]["reasons"][0]["en"]


def test_missing_input_and_unknown_check_are_errors():
    verdict, steps, _ = _run(lambda ctx, ev: ctx.read("absent"))
    assert verdict == "ERROR" and "absent" in steps[0]["reasons"][0]["en"]
    verdict, steps, _ = evaluate(SCENARIO, {}, lambda d: b"", {}, {}, [])
    assert verdict == "ERROR" and "no plugin provides it" in steps[0]["reasons"][0]["en"]


def test_a_failed_collection_makes_the_scenario_error_even_if_checks_pass():
    def ok(ctx, ev):
        ev.check(ctx.json("doc") == {}, rule="X", location="l", fr="f", en="e")

    inputs = {"doc": Artefact("0" * 64, 2, "application/json", "doc")}
    verdict, _, _ = _run(ok, inputs, [{"name": "c1", "status": "error", "message": {"fr": "x", "en": "x"}}])
    assert verdict == "ERROR"
    verdict, _, _ = _run(ok, inputs, [{"name": "c1", "status": "ok"}])
    assert verdict == "PASS"


def test_a_collector_that_does_not_apply_makes_the_scenario_not_run():
    def never(ctx, ev):
        raise AssertionError("checks must not run")

    verdict, steps, findings = _run(never, collect=[{"name": "c1", "status": "not-applicable", "message": {"fr": "x", "en": "x"}}])
    assert (verdict, steps, findings) == ("NOT_RUN", [], [])
