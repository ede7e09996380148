"""`--junitxml` (pytest's own): the verdicts a QA team's CI reads, where the xunit2 schema
allows them (test-suite properties), and nothing of the harness's internal traffic."""
import pytest
from lxml import etree

from tests.harness_run import run_harness
from tests.junit_schema import junit_schema


@pytest.mark.slow
@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_the_junit_report_carries_each_requirement_and_scenario_verdict(tmp_path, workers):
    out = tmp_path / "junit.xml"
    run = run_harness(tmp_path, *workers, "--scenario", "version", "--defect", "version-undeclared", "--lang", "en", "--junitxml", str(out),
                      env={"HARNESS_BROWSER": "none"})
    assert run.bundle is not None, run.stdout + run.stderr
    doc = etree.parse(str(out))
    schema = etree.XMLSchema(etree.parse(str(junit_schema())))
    assert schema.validate(doc), schema.error_log  # the usual schema: Jenkins xunit's junit-10.xsd
    root = doc.getroot()
    [suite] = root.findall("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert props["harness.bundle"] == str(run.bundle)
    assert {k[len("requirement."):]: v for k, v in props.items() if k.startswith("requirement.")} == run.requirement_verdicts()
    assert props["scenario.version-matches-declared"] == "FAIL LES-3.1-DECL"
    assert props["scenario.version-visible-in-ui"] == "INCONCLUSIVE LES-3.1-UI"
    # test cases: one per scenario, their outcome; no properties there (xunit2 allows none),
    # and never the harness's own result record
    cases = {tc.get("name"): tc for tc in suite.iter("testcase")}
    assert set(cases) == {r["scenario"] for r in run.manifest["results"]}
    assert not suite.findall("testcase/properties") and b"harness_result" not in out.read_bytes()
    assert cases["version-matches-declared"].find("failure") is not None
    assert "INCONCLUSIVE" in cases["version-visible-in-ui"].find("skipped").get("message")
