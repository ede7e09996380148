"""harness.RecordedRun: a run a command records itself, sealed as a pytest run is (the kit's
batch is its first user: tests/test_kit_batch.py); its reports rendered while its artefacts are
written, and a report that cannot be rendered costs that report, never the bundle."""
import zipfile

from harness import CommandContext, RecordedRun, verify_bundle
from harness.running.plugins import get_plugin_manager


def _run(tmp_path) -> RecordedRun:
    target = tmp_path / "target.toml"
    target.write_text('[product]\nid = "p"\nname = "P"\nversion = "1"\n', encoding="utf-8")
    ctx = CommandContext("fr", get_plugin_manager())
    return RecordedRun(tmp_path / "work", ["cda-kit-xsd"], ctx.load_target(target), evidence_dir=tmp_path / "ev")


def test_a_recorded_run_seals_a_bundle_with_its_reports_and_resumes_under_the_same_id(tmp_path):
    run = _run(tmp_path)
    again = _run(tmp_path)  # the same folder: the same run (an interrupted batch resumed)
    assert again.resumed and again.run_id == run.run_id and again.info.salt == run.info.salt
    art = run.record(b"<ClinicalDocument/>", media_type="application/xml", label="cda.document:a.xml")
    assert run.has(art.sha256)
    sealed = run.seal({"cda.documents": {"doc/a.xml": art}})
    assert verify_bundle(sealed.path).ok
    with zipfile.ZipFile(sealed.path) as zf:
        assert {"reports/report.html", "reports/coverage.csv", "reports/coverage.xlsx"} <= set(zf.namelist())
    assert sealed.manifest.requirements["CISIS-CDA-XSD"]["verdict"] == "ERROR"  # no XSD result recorded: nothing proven
    assert not (tmp_path / "work" / "objects").exists()  # in the bundle now


def test_a_report_that_cannot_be_rendered_costs_that_report_and_says_so(tmp_path, monkeypatch):
    from harness.reporting import report

    def broken(source, lang):
        raise RuntimeError("no renderer")

    monkeypatch.setattr(report, "members", broken)
    sealed = _run(tmp_path).seal({})
    assert verify_bundle(sealed.path).ok
    with zipfile.ZipFile(sealed.path) as zf:
        assert not [n for n in zf.namelist() if n.startswith("reports/")]
        assert "no renderer" in zf.read("manifest.json").decode("utf-8")  # the sealed manifest says it
    assert any("no renderer" in incident.render("en") for incident in sealed.manifest.incidents)
