"""Verdict derivation: nothing evaluated is never PASS, a crash is ERROR, FAIL dominates."""
import pytest

from harness import Evaluation, Severity, Text, Verdict
from harness.running.checking import evaluate
from harness.running.context import Artefact
from harness.running.steps import Registry
from harness.verdicts import combine
from tests.checking import TARGET, run, scenario, step


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
    ev.check(True, rule="X-1", location="here", message=Text.same("ok"))
    assert ev.verdict is Verdict.PASS and ev.findings == []
    ev.check(False, rule="X-2", location="there", message=Text.of({"fr": "non", "en": "no"}), severity=Severity.WARNING)
    assert ev.verdict is Verdict.PASS  # a warning does not fail
    ev.check(False, rule="X-3", location="elsewhere", message=Text.of({"fr": "non", "en": "no"}))
    assert ev.verdict is Verdict.FAIL
    f = ev.findings[-1]
    assert (f.rule, f.requirement, f.location, f.message.texts()) == ("X-3", "R-1", "elsewhere", {"fr": "non", "en": "no"})
    ev2 = Evaluation("R-1")
    ev2.manual_pending(Text.same("to do"))
    assert ev2.verdict is Verdict.MANUAL_PENDING


def test_judging_units_counts_assertions_and_their_findings_decide():
    ev = Evaluation("R-1")
    ev.judged(2)
    assert ev.assertions == 2 and ev.verdict is Verdict.PASS
    ev.add(rule="X", location="doc", message=Text.same("bad"), severity=Severity.ERROR)
    assert ev.verdict is Verdict.FAIL


def test_a_check_that_asserts_nothing_is_inconclusive_with_a_reason():
    verdict, steps, findings = run(lambda ctx, ev: None)
    assert verdict is Verdict.INCONCLUSIVE
    assert steps[0].reasons[0].render("en").startswith("No assertion was evaluated")


def test_a_crashing_check_is_error_not_a_crash():
    def boom(ctx, ev):
        ev.check(True, rule="X", location="l", message=Text.same("e"))
        raise ZeroDivisionError("bad")

    verdict, steps, _ = run(boom)
    assert verdict is Verdict.ERROR
    assert "ZeroDivisionError" in steps[0].reasons[0].render("en")


def test_missing_input_and_unknown_check_are_errors():
    verdict, steps, _ = run(lambda ctx, ev: ctx.read("absent"))
    assert verdict is Verdict.ERROR and "absent" in steps[0].reasons[0].render("en")
    verdict, steps, _ = evaluate(scenario(), {}, lambda d: b"", TARGET, Registry({}, {}), [])
    assert verdict is Verdict.ERROR and "no plugin provides it" in steps[0].reasons[0].render("en")


def test_a_check_reads_only_the_inputs_it_declares():
    from harness import check

    inputs = {"doc/a.xml": Artefact("a" * 64, 1, "application/xml", "d"), "other": Artefact("b" * 64, 1, "x", "o")}

    @check(reads=["doc"])
    def reader(ctx, ev):
        assert list(ctx.items("doc")) == ["a.xml"] and list(ctx.inputs) == ["doc/a.xml"]
        ev.judged()
        ctx.read("other")

    verdict, steps, _ = run(reader, inputs)
    assert verdict is Verdict.ERROR
    assert steps[0].reasons[0].render("en") == "Input not declared by the check: other (declared inputs: doc)"


def test_a_failed_collection_makes_the_scenario_error_even_if_checks_pass():
    def ok(ctx, ev):
        ev.check(ctx.json("doc") == {}, rule="X", location="l", message=Text.same("e"))

    inputs = {"doc": Artefact("0" * 64, 2, "application/json", "doc")}
    assert run(ok, inputs, [step("c1", "error", "x")])[0] is Verdict.ERROR
    assert run(ok, inputs, [step("c1", "ok")])[0] is Verdict.PASS


def test_a_collector_that_does_not_apply_makes_the_scenario_not_run():
    def never(ctx, ev):
        raise AssertionError("checks must not run")

    assert run(never, collect=[step("c1", "not-applicable", "x")]) == (Verdict.NOT_RUN, [], [])


def test_one_problem_type_for_every_domain_library_and_it_refuses_a_misplaced_message():
    import harness
    from harness import Problem, Severity, Text

    p = Problem("R-1", Severity.ERROR, "/a/b", Text.same("x"))
    assert (p.rule, p.location, p.text("en")) == ("R-1", "/a/b", "x") and harness.Problem is Problem
    assert Problem("R-2", Severity.WARNING, message=Text.same("y")).location == ""
    with pytest.raises(TypeError):
        Problem("R-3", Severity.ERROR, Text.same("a message where the location goes"))  # type: ignore[arg-type]
    import harness_cda.rules
    import harness_ins.identity
    import harness_xds.rules

    for library in (harness_cda.rules, harness_ins.identity, harness_xds.rules):
        assert library.Problem is Problem, library.__name__


def test_each_domain_library_is_importable_on_its_own():
    """The CDA, INS and XDS libraries load without any service plugin or the demo."""
    import subprocess
    import sys

    code = ("import sys, harness_cda.rules, harness_cda.builtin, harness_ins.identity, harness_ins.hl7v2, harness_xds.ebrim, harness_xds.xdm;"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('harness_dmp', 'harness_mssante', 'harness_terminology', "
            "'harness_version', 'harness_demo')); print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
