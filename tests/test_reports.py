"""Reports a person reads: the self-contained HTML page (opened offline in a real headless
browser), the requirement coverage matrix (CSV, XLSX), Allure results, equivalence of
proofs, and the live view followed in a browser during a run."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from harness.evidence.bundle import Bundle, verify_bundle
from harness.session.liveview import parse_address
from harness.reporting.report import Source, bundle_facts, coverage_csv, coverage_xlsx, render_html
from harness.running.scenarios import load_catalogue
from harness_version.browser import find_browser
from tests.harness_run import RunPool, run_harness

ROOT = Path(__file__).parents[1]
needs_browser = pytest.mark.skipif(find_browser() is None, reason="no Chromium (apt-get install chromium; CI installs it)")


def _chromium(p):
    return p.chromium.launch(executable_path=find_browser(), args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])


def _members(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


NO_BROWSER = {"HARNESS_BROWSER": "none"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every run of the module with fixed arguments, started at once (tests/harness_run.py)."""
    f = tmp_path_factory
    with RunPool(f) as pool:
        pool.harness("version", "--scenario", "version", "--lang", "en", shared=True)  # also tests/test_version_browser.py's conformant run
        folder = f.mktemp("extra")
        (folder / "extra").mkdir()
        (folder / "extra" / "extra.toml").write_text(SCENARIO_FILE, encoding="utf-8")
        pool.harness("extra", "--scenario-dir", str(folder / "extra"), "--scenario", "extra", "--lang", "en", env=NO_BROWSER, cwd=folder)
        allure = f.mktemp("allure")
        pool.harness("allure", "--scenario", "version", "--defect", "version-undeclared", "--lang", "en", "--alluredir", str(allure / "allure"),
                     allure=True, cwd=allure)
        # each in a folder of its own: a run's bundle is the one that appeared in its folder
        for n in range(2):
            pool.harness(f"same/{n}", "--scenario", "version", "--scenario", "ins", env=NO_BROWSER)
        pool.harness("defect-renamed", "--scenario", "version", "--scenario", "ins", "--defect", "version-undeclared",
                     "--set", "product.name=Cabinet Démo Plus", env=NO_BROWSER)
        pool.harness("other-product", "--scenario", "ins", "--set", "product.id=com.example.other", env=NO_BROWSER)
        pool.harness("bad-live", "--scenario", "version-matches-declared", "--live", "127.0.0.1:99999", "--lang", "en")
        for build in ("4.2.0+a1", "4.2.0+b2"):
            pool.harness(f"component/{build}", "--scenario", "ins", "--set", f"product.components.ins={build}", env=NO_BROWSER)
        yield pool


@pytest.fixture(scope="module")
def version_run(runs):
    """A demo run of the version scenarios, with the browser when there is one."""
    run = runs["version"]
    assert run.returncode == 0 and run.bundle is not None, run.stdout + run.stderr
    return run


def test_the_reports_are_written_beside_the_bundle_and_sealed_inside_it(version_run):
    bundle = version_run.bundle
    stem = bundle.name[:-4]
    for suffix in (".html", ".coverage.csv", ".coverage.xlsx"):
        assert (bundle.parent / f"{stem}{suffix}").stat().st_size > 0
        assert f"{stem}{suffix}" in version_run.stdout
    report = verify_bundle(bundle)
    assert report.ok, report.problems
    members = report.manifest["members"]
    assert {"reports/report.html", "reports/coverage.csv", "reports/coverage.xlsx"} <= set(members)
    # the copy beside names the bundle's hash; the sealed copy cannot, and says so
    beside = (bundle.parent / f"{stem}.html").read_text(encoding="utf-8")
    inside = _members(bundle)["reports/report.html"].decode("utf-8")
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() in beside
    assert "unsigned" in beside and "this report is inside the evidence bundle" in inside
    # the matrix beside is the sealed one, byte for byte (the run that sealed it took it from there),
    # and what rendering it again from the bundle's record gives
    for suffix, member in ((".coverage.csv", "reports/coverage.csv"), (".coverage.xlsx", "reports/coverage.xlsx")):
        assert (bundle.parent / f"{stem}{suffix}").read_bytes() == _members(bundle)[member]
    with Bundle(bundle) as opened:
        source = Source.of_bundle(opened, bundle_facts(opened))
        assert coverage_xlsx(source, "en") == _members(bundle)["reports/coverage.xlsx"]


@needs_browser
def test_the_html_report_opens_offline_in_a_browser_with_no_request_and_its_screenshots_shown(version_run):
    from playwright.sync_api import sync_playwright

    bundle = version_run.bundle
    html = bundle.parent / f"{bundle.name[:-4]}.html"
    manifest = version_run.manifest
    with sync_playwright() as p:
        browser = _chromium(p)
        context = browser.new_context(offline=True)
        requests: list[str] = []
        context.on("request", lambda r: requests.append(r.url))
        page = context.new_page()
        page.goto(html.as_uri())
        page.wait_for_load_state("load")
        shown = {row.get_attribute("id")[4:] for row in page.locator("tr.requirement").all()}
        widths = page.evaluate("[...document.querySelectorAll('img.screenshot')].map(i => i.complete ? i.naturalWidth : 0)")
        signature = page.text_content("#signature")
        digest = page.text_content("#bundle-sha256")
        browser.close()
    assert requests == [html.as_uri()]  # the page itself, nothing else
    assert shown == set(manifest["requirements"])
    screenshots = [d for d, m in manifest["artefacts"].items() if m["media_type"] == "image/png"]
    assert screenshots and len(widths) == len(screenshots) and all(w > 100 for w in widths), widths  # the run had a browser
    assert "unsigned" in signature and digest == hashlib.sha256(bundle.read_bytes()).hexdigest()


def _source(message: str, label: str = "exchange:ui") -> Source:
    digest = "a" * 64
    manifest = {
        "run_id": "r", "format": "harness-bundle/2", "target": {"product": {"id": "p", "name": "N", "version": "1"}},
        "requirements": {"R-1": {"verdict": "FAIL", "scenarios": ["s"], "id": "R-1", "source": "src", "level": "must",
                                 "text": {"fr": "énoncé", "en": "statement"}, "official_ids": ["EX-1"]}},
        "scenarios": [{"id": "s", "title": {"fr": "t", "en": "t"}, "tags": ["x"], "criticality": "major"}],
        "results": [{"scenario": "s", "requirements": ["R-1"], "verdict": "FAIL", "collect": [], "inputs": {"page": digest}, "checks": []}],
        "artefacts": {digest: {"size": 10, "media_type": "application/json", "label": label}},
        "coverage": {"unproven": {"R-2": {"id": "R-2", "source": "src", "level": "must", "text": {"fr": "deux", "en": "two"}, "tags": ["x"]}}},
    }
    findings = {"s": [{"rule": "R", "requirement": "R-1", "severity": "error", "location": message, "artefact": digest,
                       "message": {"fr": message, "en": message}}]}
    return Source(manifest, findings, lambda d: b"{}")


@needs_browser
def test_what_the_software_sent_is_text_in_the_report_never_markup_or_a_request(tmp_path):
    from playwright.sync_api import sync_playwright

    hostile = '<img src="http://198.51.100.7/x.png" onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'
    page_file = tmp_path / "r.html"
    page_file.write_bytes(render_html(_source(hostile), "en"))
    with sync_playwright() as p:
        browser = _chromium(p)
        context = browser.new_context()
        requests: list[str] = []
        context.on("request", lambda r: requests.append(r.url))
        page = context.new_page()
        page.goto(page_file.as_uri())
        title = page.title()
        text = page.text_content("tr.finding")
        browser.close()
    assert requests == [page_file.as_uri()] and title != "pwned"
    assert hostile in text  # shown as the text it is


def test_the_coverage_matrix_lists_evidence_by_hash_and_what_no_scenario_proves_and_never_a_formula():
    from openpyxl import load_workbook

    source = _source("=HYPERLINK(\"http://198.51.100.7\")", label="=cmd|' /C calc'!A0")
    rows = list(csv.reader(io.StringIO(coverage_csv(source, "en").decode("utf-8-sig"))))
    assert rows[0][0] == "Requirement" and rows[1][:7] == ["R-1", "EX-1", "must", "statement", "FAIL", "s", "FAIL"]
    assert rows[1][8] == f"artefacts/{'a' * 64} (=cmd|' /C calc'!A0)"  # not first in its cell: no formula
    assert rows[2][:7] == ["R-2", "", "must", "two", "NO_SCENARIO", "", ""]
    wb = load_workbook(io.BytesIO(coverage_xlsx(source, "en")))
    coverage, evidence = wb.worksheets
    assert [c.value for c in coverage[2]][:5] == ["R-1", "EX-1", "must", "statement", "FAIL"]
    assert evidence["C2"].value == "'=cmd|' /C calc'!A0" and evidence["C2"].data_type == "s"
    assert all(c.data_type != "f" for sheet in wb.worksheets for row in sheet.iter_rows() for c in row)


def test_the_matrix_of_a_real_run_matches_the_bundle(version_run):
    from openpyxl import load_workbook

    bundle = version_run.bundle
    manifest = version_run.manifest
    members = _members(bundle)
    rows = list(csv.DictReader(io.StringIO(members["reports/coverage.csv"].decode("utf-8-sig"))))
    pairs = {(r["Requirement"], r["Scenario"]) for r in rows}
    assert pairs == {(req, s) for req, rec in manifest["requirements"].items() for s in rec["scenarios"]}
    for r in rows:
        assert r["Official identifiers"] == "Convention label e-santé MSP/CDS, art. 3.1"
        for line in r["Evidence (bundle members, named by their SHA-256)"].splitlines():
            member = line.split(" ")[0]
            assert hashlib.sha256(members[member]).hexdigest() == member.split("/")[1]
    wb = load_workbook(bundle.parent / f"{bundle.name[:-4]}.coverage.xlsx")
    assert wb.worksheets[0].max_row == len(rows) + 1
    assert wb.worksheets[1].max_row == len(manifest["artefacts"]) + 1


SCENARIO_FILE = '''
[[requirement]]
id = "X-1"
source = "test"
level = "must"
official_ids = ["EX_X-1010"]
text = { fr = "un", en = "one" }

[[requirement]]
id = "X-2"
source = "test"
level = "must"
text = { fr = "deux", en = "two" }

[[scenario]]
id = "x-declared"
title = { fr = "Déclarée", en = "Declared" }
requirements = ["X-1"]
profiles = ["lgc"]
criticality = "minor"
proof = "api"
tags = ["extra"]
collect = ["version.ui", "version.api"]
checks = ["version.matches_declared"]
'''


def test_requirements_of_a_selected_tag_that_no_scenario_proves_are_listed(runs, tmp_path):
    folder = tmp_path / "extra"
    folder.mkdir()
    (folder / "extra.toml").write_text(SCENARIO_FILE, encoding="utf-8")
    catalogue = load_catalogue([folder])
    assert catalogue.requirements["X-1"].official_ids == ("EX_X-1010",)
    assert list(catalogue.unproven(["extra"], ["X-1"])) == ["X-2"]
    assert catalogue.unproven(["x-declared"], ["X-1"]) == {}  # a scenario chosen by id: its requirements only
    run = runs["extra"]
    assert run.bundle is not None, run.stdout + run.stderr
    assert run.manifest["coverage"]["unproven"]["X-2"]["tags"] == ["extra"]
    assert run.manifest["requirements"]["X-1"]["official_ids"] == ["EX_X-1010"]
    rows = list(csv.reader(io.StringIO(_members(run.bundle)["reports/coverage.csv"].decode("utf-8-sig"))))
    assert [r[0] for r in rows[1:]] == ["X-1", "X-2"] and rows[2][4] == "NO_SCENARIO"


def test_a_scenario_file_with_an_unknown_requirement_key_is_refused(tmp_path):
    from harness.errors import ScenarioError

    (tmp_path / "bad.toml").write_text(SCENARIO_FILE.replace("official_ids", "oficial_ids"), encoding="utf-8")
    with pytest.raises(ScenarioError) as exc:
        load_catalogue([tmp_path])
    assert "oficial_ids" in exc.value.message("en")


# -- Allure ------------------------------------------------------------------------------


@pytest.mark.slow
def test_allure_results_carry_titles_labels_steps_and_attachments(runs):
    run = runs["allure"]
    alluredir = run.cwd / "allure"
    assert run.bundle is not None, run.stdout + run.stderr
    results = [json.loads(p.read_text()) for p in alluredir.glob("*-result.json")]
    by_name = {r["name"]: r for r in results}
    titles = {s["id"]: s["title"]["en"] for s in run.manifest["scenarios"]}
    assert set(by_name) == set(titles.values())
    verdicts = {r["scenario"]: r["verdict"] for r in run.manifest["results"]}
    status = {"PASS": "passed", "FAIL": "failed", "ERROR": "broken", "INCONCLUSIVE": "skipped", "NOT_RUN": "skipped", "MANUAL_PENDING": "skipped"}
    for sid, title in titles.items():
        r = by_name[title]
        labels = {(label["name"], label["value"]) for label in r["labels"]}
        scenario = next(s for s in run.manifest["scenarios"] if s["id"] == sid)
        assert r["status"] == status[verdicts[sid]], (sid, r["status"])
        assert {("requirement", req) for req in scenario["requirements"]} <= labels
        assert ("criticality", scenario["criticality"]) in labels and ("verdict", verdicts[sid]) in labels
        assert [s["name"] for s in r["steps"]][: len(scenario["collect"])] == [f"Collect {c}" for c in scenario["collect"]]
        assert any(s["name"].startswith(f"Check {scenario['checks'][0]}") for s in r["steps"])
        for step in r["steps"]:
            for a in step.get("attachments", []):
                assert (alluredir / a["source"]).stat().st_size > 0
    failed = by_name[titles["version-matches-declared"]]
    check = next(s for s in failed["steps"] if s["name"].startswith("Check"))
    assert check["status"] == "failed" and any(s["name"].startswith("[VER-DECL-01]") and s["status"] == "failed" for s in check["steps"])
    if find_browser():
        ui = by_name[titles["version-visible-in-ui"]]
        assert any(a["type"] == "image/png" for s in ui["steps"] for a in s.get("attachments", []))


# -- equivalence of proofs ------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_runs(runs, tmp_path_factory):
    """Two identical demo runs, then one with a defect and another product name."""
    cwd = tmp_path_factory.mktemp("equivalence")
    three = [runs["same/0"], runs["same/1"], runs["defect-renamed"]]
    assert all(r.bundle is not None for r in three), [r.stdout + r.stderr for r in three]
    return cwd, three


def _equivalence(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", "--lang", "en", "equivalence", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
def test_two_identical_runs_are_equivalent_requirement_by_requirement(three_runs):
    cwd, (a, b, _) = three_runs
    out = _equivalence(cwd, str(a.bundle), str(b.bundle), "--json", "eq.json")
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads((cwd / "eq.json").read_text())
    reqs = {r["requirement"]: r for r in result["requirements"]}
    assert set(reqs) == set(a.manifest["requirements"])
    assert all(r["equivalent"] and not r["differences"] for r in reqs.values())
    # reusable: what passed (without a browser, the UI's visibility is INCONCLUSIVE: nothing to reuse)
    assert {req for req, r in reqs.items() if r["reusable"]} == {req for req, r in a.manifest["requirements"].items() if r["verdict"] == "PASS"}
    # exchanges carry their times: collected again, judged alike
    assert {r["basis"] for r in reqs.values()} <= {"same-evidence", "same-conclusions"}
    same = _equivalence(cwd, str(a.bundle), str(a.bundle), "--json", "self.json")
    assert {r["basis"] for r in json.loads((cwd / "self.json").read_text())["requirements"]} == {"same-evidence"}


@pytest.mark.slow
def test_a_defect_makes_only_the_requirements_it_touches_differ_across_product_names(runs, three_runs):
    cwd, (a, _, c) = three_runs
    out = _equivalence(cwd, str(a.bundle), str(c.bundle), "--json", "eq.json", "--html", "eq.html")
    assert out.returncode == 1, out.stdout + out.stderr
    reqs = {r["requirement"]: r for r in json.loads((cwd / "eq.json").read_text())["requirements"]}
    differ = {req for req, r in reqs.items() if not r["equivalent"]}
    # the undeclared version: the UI shows another number than declared (DECL fails, and what
    # the UI proof shows changed); INS and the other version rules are untouched, product
    # name changed or not
    assert differ == {"LES-3.1-DECL", "LES-3.1-UI"}, out.stdout
    assert any("VER-DECL-01" in d["en"] for d in reqs["LES-3.1-DECL"]["differences"])
    html = (cwd / "eq.html").read_text(encoding="utf-8")
    assert 'id="equivalence"' in html and html.count('class="equivalence"') == len(reqs)
    other = runs["other-product"]
    out = _equivalence(cwd, str(a.bundle), str(other.bundle))
    assert out.returncode == 1 and "another product" in out.stdout


# -- the live view --------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("", ("127.0.0.1", 0)), ("8080", ("127.0.0.1", 8080)), (":8080", ("127.0.0.1", 8080)), ("0.0.0.0:9000", ("0.0.0.0", 9000)),
    ("[::1]:8081", ("::1", 8081)), ("localhost", ("localhost", 0)),
])
def test_live_addresses(value, expected):
    assert parse_address(value) == expected


def test_a_bad_live_address_is_a_usage_error(runs):
    run = runs["bad-live"]
    assert run.returncode == 4 and "invalid live view address" in run.stderr
    assert run.bundle is None
    folder = run.cwd
    assert not (folder / "reports").exists() or not list((folder / "reports").iterdir())  # nothing left behind


def _get(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
@needs_browser
def test_the_live_view_followed_in_a_browser_shows_scenarios_as_they_run(tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.harness_run import harness_env

    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:allure_pytest",
         "--scenario", "version", "--scenario", "dmp", "--live", "--live-linger", "3", "--lang", "en"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=harness_env())
    try:
        url = None
        for line in proc.stdout:
            m = re.search(r"Live view: (http://127\.0\.0\.1:\d+/[\w-]+/)", line)
            if m:
                url = m.group(1)
                break
        assert url, "no live view URL printed"
        base = url.rsplit("/", 2)[0]
        assert _get(base + "/") == 404 and _get(base + "/wrong-token/") == 404 and _get(url + "events", "POST") == 405
        seen = []
        with sync_playwright() as p:
            browser = _chromium(p)
            page = browser.new_page()
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and page.locator("#verdicts tr").count() == 0:
                seen.append((page.text_content("#done"), page.locator("section.scenario").count(),
                             page.locator("section.scenario.running").count()))
                time.sleep(0.2)
            verdicts = {tds[0]: tds[1] for tds in (row.locator("td").all_text_contents() for row in page.locator("#verdicts tr").all())}
            ended = page.locator("section.scenario.ended").count()
            widths = page.evaluate("[...document.querySelectorAll('img.screenshot')].map(i => i.naturalWidth)")
            bundle = page.text_content("#bundle")
            browser.close()
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    manifest = json.loads(zipfile.ZipFile(bundle).read("manifest.json"))
    total = len(manifest["results"])
    # scenarios appeared while the run went on: some done, others not yet, one running
    partial = [(done, n, running) for done, n, running in seen if 0 < int(done.split("/")[0]) < total]
    assert partial and any(running for _, _, running in partial), seen[:20]
    assert verdicts == {req: r["verdict"] for req, r in manifest["requirements"].items()}
    assert ended == total
    assert widths and all(w > 100 for w in widths)
    assert {u.split("/")[2] for u in requests} == {url.split("/")[2]}  # nothing from elsewhere
    assert "Live view served for 3 more s" in out
    # nothing is served once the run is over
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=3)


@pytest.mark.slow
def test_a_long_step_shows_progress_on_the_terminal(tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Slow(BaseHTTPRequestHandler):  # a product whose page takes 1.5 s to answer
        def do_GET(self):
            time.sleep(1.5)
            body = b"<html><body><footer>Slow 1.0 version 1.0</footer></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = tmp_path / "t.toml"
    target.write_text(f'[product]\nid = "slow"\nname = "Slow"\nversion = "1.0"\n\n[endpoints]\nui = "http://127.0.0.1:{server.server_port}/"\n')
    try:
        run = run_harness(tmp_path, "--scenario", "version-visible-in-ui", "--lang", "en", "--target", str(target),
                          env={"HARNESS_PROGRESS_AFTER": "0.3", "HARNESS_BROWSER": "none"})
    finally:
        server.shutdown()
    lines = [line for line in run.stdout.splitlines() if line.startswith("[harness]")]
    assert lines, run.stdout
    assert re.match(r"\[harness\] 0/1 scenarios done; running: version-visible-in-ui — collect version.ui \(\d s\)$", lines[0]), lines[0]


@pytest.mark.slow
def test_a_component_built_again_makes_its_requirements_differ(runs, tmp_path):
    built = [runs[f"component/{build}"] for build in ("4.2.0+a1", "4.2.0+b2")]
    out = _equivalence(tmp_path, str(built[0].bundle), str(built[1].bundle), "--json", "eq.json")
    reqs = json.loads((tmp_path / "eq.json").read_text())["requirements"]
    assert out.returncode == 1 and reqs and all(not r["equivalent"] for r in reqs)
    assert all(any("component ins at 4.2.0+a1 then 4.2.0+b2" in d["en"] for d in r["differences"]) for r in reqs)


@pytest.mark.slow
def test_a_change_of_the_rules_code_under_the_same_version_number_is_seen(three_runs, tmp_path):
    from tests.test_bundle import _reseal

    cwd, (a, b, _) = three_runs
    assert set(a.manifest["rules"]) >= {"harness", "harness-version", "harness-ins"}
    members = _members(b.bundle)
    manifest = json.loads(members["manifest.json"])
    manifest["rules"]["harness-version"] = "0" * 64  # the version plugin's rules, edited without a new version number
    members["manifest.json"] = json.dumps(manifest).encode()
    changed = _reseal(members, tmp_path / "changed.zip")
    out = _equivalence(cwd, str(a.bundle), str(changed), "--json", str(tmp_path / "eq.json"))
    reqs = {r["requirement"]: r for r in json.loads((tmp_path / "eq.json").read_text())["requirements"]}
    assert out.returncode == 1
    assert {req for req, r in reqs.items() if not r["equivalent"]} == {req for req in reqs if req.startswith("LES-")}
    assert all(any("rules' code of harness-version changed" in d["en"] for d in r["differences"])
               for req, r in reqs.items() if req.startswith("LES-"))
    # a bundle from before the fingerprints: nothing proves the rules did not change
    fmt2 = ROOT / "fixtures" / "bundles" / "demo-all-format2.zip"
    out = _equivalence(cwd, str(fmt2), str(a.bundle))
    assert out.returncode == 1 and "only one bundle records the fingerprint of the rules' code" in out.stdout
    assert "requirement missing from the new bundle" in out.stdout  # the earlier run proved more (DMP, MSSanté...)


def test_a_hostile_bundle_gets_its_report_without_a_crash(version_run, tmp_path):
    """A re-sealed bundle whose exchange record nests 100,000 levels deep and whose label is
    markup: the report is written, the record is listed by hash, the label is text."""
    from tests.test_bundle import _reseal

    members = _members(version_run.bundle)
    evil = b"[" * 100_000 + b"]" * 100_000
    digest = hashlib.sha256(evil).hexdigest()
    members[f"artefacts/{digest}"] = evil
    manifest = json.loads(members["manifest.json"])
    manifest["artefacts"][digest] = {"size": len(evil), "media_type": "application/json", "label": "exchange:<script>alert(1)</script>"}
    manifest["members"][f"artefacts/{digest}"] = digest
    members["manifest.json"] = json.dumps(manifest).encode()
    hostile = _reseal(members, tmp_path / "hostile.zip")
    out = subprocess.run([sys.executable, "-m", "harness.cli", "--lang", "en", "report", str(hostile), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=60)
    # an artefact slipped in changes the sealed page: replay says so (status 1), the report is written
    assert out.returncode == 1 and "reports/report.html: - -> -" in out.stdout and "Traceback" not in out.stderr, out.stdout + out.stderr
    html = (tmp_path / "out" / "hostile.html").read_text(encoding="utf-8")
    assert "exchange:&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html and digest in html
