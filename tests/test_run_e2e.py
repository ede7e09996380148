"""The main command end to end: embedded demo, verdicts, bundle, defects, xdist, secrets."""
import re
import zipfile

import pytest

from harness_demo.app import DEFECTS
from harness_version.browser import distribution_browser as find_browser
from tests.harness_run import RunPool, run_harness

ALL_REQUIREMENTS = {"LES-3.1-UI", "LES-3.1-DECL", "LES-3.1-SCHEME", "LES-3.1-CHRONO", "LES-3.1-CHANGE", "LES-3.1-CHANNELS"}
TOKEN = "demo-token-7c1e9a55f0"
USER_SCENARIO = (
    '[[requirement]]\nid = "ACME-1"\nsource = "internal QA"\nlevel = "may"\n'
    'text = { fr = "Version cohérente", en = "Consistent version" }\n'
    '[[scenario]]\nid = "acme-consistent"\ntitle = { fr = "f", en = "e" }\nrequirements = ["ACME-1"]\n'
    'profiles = ["lgc"]\ncriticality = "minor"\nproof = "text"\ntags = ["acme"]\n'
    'collect = ["version.ui", "version.api"]\nchecks = ["version.same_in_channels"]\n'
)


def _folder(factory, name: str, files: dict[str, str]):
    folder = factory.mktemp(name)
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def _collect_and_plain(folder):
    return run_harness(folder, "--scenario", "version-same-in-channels"), run_harness(folder)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every run of the module, started at once (tests/harness_run.py); the files a run reads
    (a target, a user's scenario folder, a project's tests) are written before it starts."""
    f = tmp_path_factory
    with RunPool(f) as pool:
        # the README's main command in an interpreter of its own, as a user starts it (the others
        # are forked from one that imported the harness already: tests/harness_zygote.py); with
        # the demo API's token in the environment, as a user keeps a secret, and every outcome
        # printed (-rA): the secrets test judges the same run
        pool.harness("demo", "--scenario", "all", "-rA", fresh=True, env={"HARNESS_DEMO_TOKEN": TOKEN})
        for defect in sorted(EXPECTED):
            pool.harness(f"defect/{defect}", "--scenario", "version", "--defect", defect, "--lang", "en")
        # each in a folder of its own: a run's bundle is the one that appeared in its folder
        pool.harness("parallel", "-n", "2", "--scenario", "all", "--defect", "version-channel-mismatch")
        pool.harness("serial", "--scenario", "all", "--defect", "version-channel-mismatch", shared=True)  # tests/test_bundle.py's too
        pool.harness("unknown", "--scenario", "verison")
        folder = _folder(f, "malformed", {"vendor.toml": '[product]\nid = "x"\nname = "X"\nversion = 3\n'})
        pool.harness("malformed", "--scenario", "all", "--target", str(folder / "vendor.toml"), "--lang", "en", cwd=folder)
        folder = _folder(f, "tests", {"tests/test_boom.py": "def test_boom():\n    assert False\n", "pytest.ini": "[pytest]\ntestpaths = tests\n"})
        pool.submit("collect", _collect_and_plain, folder)
        pool.harness("english", "--scenario", "version-visible-in-ui", "--lang", "en")
        folder = _folder(f, "down", {"down.toml": '[product]\nid = "x"\nname = "X"\nversion = "1.0.0"\n'
                                                  '[endpoints]\nui = "http://127.0.0.1:9/"\napi = "http://127.0.0.1:9/api"\n'})
        pool.harness("unreachable", "--scenario", "all", "--target", str(folder / "down.toml"), "--lang", "en", cwd=folder)
        folder = _folder(f, "remote", {"remote.toml": '[product]\nid = "x"\nname = "X"\nversion = "1.0.0"\n'
                                                      '[endpoints]\nui = "https://vendor.example.test/"\n'})
        pool.harness("offline", "--scenario", "version-visible-in-ui", "--target", str(folder / "remote.toml"), "--offline", "--lang", "en",
                     cwd=folder)
        folder = _folder(f, "nodemo", {"t.toml": '[product]\nid = "x"\nname = "X"\nversion = "1.0.0"\n'})
        pool.harness("defect-no-demo", "--scenario", "all", "--target", str(folder / "t.toml"), "--defect", "version-hidden", "--lang", "en",
                     cwd=folder)
        pool.harness("defect-unknown", "--scenario", "all", "--defect", "no-such-defect", "--lang", "en")
        folder = _folder(f, "user", {"my-scenarios/mine.toml": USER_SCENARIO})
        pool.harness("user-folder", "--scenario", "acme", "--scenario-dir", str(folder / "my-scenarios"), "--defect", "version-channel-mismatch",
                     cwd=folder)
        pool.harness("hidden", "--scenario", "version-visible-in-ui", "--defect", "version-hidden")
        yield pool


@pytest.fixture(scope="module")
def demo_run(runs):
    return runs["demo"]


def test_main_command_passes_on_the_conformant_demo_and_writes_a_bundle(demo_run):
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    assert demo_run.bundle is not None and demo_run.bundle.parent.name == "reports"
    verdicts = demo_run.requirement_verdicts()
    assert {r: v for r, v in verdicts.items() if r in ALL_REQUIREMENTS} == dict.fromkeys(sorted(ALL_REQUIREMENTS), "PASS")
    # the embedded demo configures no CDA kit: those scenarios are not run, and say why
    assert {v for r, v in verdicts.items() if r.startswith("CISIS-CDA")} == {"NOT_RUN"}
    assert "aucun kit CDA indiqué" in demo_run.stdout
    out = demo_run.stdout
    assert "Verdicts par exigence" in out
    assert f"Dossier de preuves : {demo_run.bundle}" in out
    for req in ALL_REQUIREMENTS:
        assert re.search(rf"PASS\s+{req}", out), req
    m = demo_run.manifest
    assert m["target"]["services"]["demo-vendor"]["defects"] == []
    assert m["started_at"].endswith("Z") and m["finished_at"] >= m["started_at"]
    assert set(m["plugins"]) >= {"harness-demo", "harness-version"}
    assert m["harness"]["python"] and m["harness"]["pytest"]
    # every check evaluated something: a PASS is backed by assertions
    for r in m["results"]:
        assert all(c["assertions"] > 0 for c in r["checks"]), r


def test_ui_proof_is_recorded(demo_run):
    labels = {meta["label"] for meta in demo_run.manifest["artefacts"].values()}
    assert {"version.ui.page", "version.ui.rendering", "version.api", "version.history", "exchange:version.ui.page"} <= labels
    shots = [f for f in demo_run.findings() if f["rule"] == "VER-UI-03"]
    if find_browser():  # the screenshot of each view (the page, the About page one click away), the version outlined
        assert {"version.ui.view:01", "version.ui.view:02"} <= labels
        assert shots[0]["severity"] == "info" and shots[0]["artefact"]
    else:  # visibility not proven without a browser: no screenshot, nothing judged from the raw HTML
        assert shots == [] and demo_run.requirement_verdicts()["LES-3.1-UI"] == "INCONCLUSIVE"


EXPECTED = {
    # defect: (the requirement it must fail, every requirement that fails with it)
    "version-hidden": ("LES-3.1-UI", {"LES-3.1-UI"}),
    "version-undeclared": ("LES-3.1-DECL", {"LES-3.1-DECL"}),
    "version-unorderable": ("LES-3.1-SCHEME", {"LES-3.1-SCHEME", "LES-3.1-DECL"}),
    "version-regression": ("LES-3.1-CHRONO", {"LES-3.1-CHRONO", "LES-3.1-DECL"}),
    "version-frozen": ("LES-3.1-CHANGE", {"LES-3.1-CHANGE", "LES-3.1-DECL"}),
    "version-channel-mismatch": ("LES-3.1-CHANNELS", {"LES-3.1-CHANNELS"}),
}


def test_every_defect_has_an_expectation():
    from tests.test_version_browser import SITUATIONS

    # INS ones: test_ins_e2e.py; what a person sees of the version: test_version_browser.py
    assert set(EXPECTED) | set(SITUATIONS) - {""} | {"version-in-image"} == {d for d in DEFECTS if d.startswith("version-")}


@pytest.mark.parametrize("defect", sorted(EXPECTED))
def test_each_demo_defect_is_caught_with_its_requirement(runs, defect):
    expected, all_failing = EXPECTED[defect]
    run = runs[f"defect/{defect}"]
    assert run.returncode == 1, run.stdout
    assert expected in run.failing()
    assert run.failing() == all_failing
    failing_findings = {f["requirement"] for f in run.findings() if f["severity"] == "error"}
    assert failing_findings == all_failing
    assert run.manifest["target"]["services"]["demo-vendor"]["defects"] == [defect]


def test_xdist_run_gives_the_same_verdicts_as_a_serial_run(runs):
    parallel, serial = runs["parallel"], runs["serial"]
    assert parallel.bundle and serial.bundle and parallel.bundle != serial.bundle
    assert parallel.manifest["options"]["workers"] == 2
    assert parallel.requirement_verdicts() == serial.requirement_verdicts()
    key = lambda m: [(r["scenario"], r["verdict"], [(c["name"], c["verdict"], c["assertions"]) for c in r["checks"]]) for r in m["results"]]
    assert key(parallel.manifest) == key(serial.manifest)
    # ports differ, and the DMP and mail simulators number its exchanges in the order the processes reached it
    strip = lambda fs: sorted((f["rule"], f["requirement"], f["severity"], re.sub(r"(dmp|mss)-doc/\d+-", r"\1-doc/N-", re.sub(r":\d+/", ":PORT/", f["location"])))
                              for f in fs)
    assert strip(parallel.findings()) == strip(serial.findings())
    assert not list(parallel.bundle.parent.glob(".staging-*")), "staging store left behind"
    from harness.cli import main as cli

    assert cli(["verify", "--replay", str(parallel.bundle)]) == 0


def test_unknown_scenario_fails_fast_with_the_known_names(runs):
    run = runs["unknown"]
    assert run.returncode == 4
    assert "Scénario inconnu : verison" in run.stderr
    assert "version-visible-in-ui" in run.stderr and "all" in run.stderr
    assert run.bundle is None


def test_malformed_target_gives_a_precise_error_not_a_traceback(runs):
    run = runs["malformed"]
    assert run.returncode == 4
    assert re.search(r"\S+/vendor\.toml: product\.version: expected a string", run.stderr), run.stderr
    assert "Traceback" not in run.stderr + run.stdout


def test_scenario_runs_never_collect_tests_and_plain_pytest_runs_no_scenario(runs):
    run, plain = runs["collect"]
    assert run.returncode == 0, run.stdout
    assert "test_boom" not in run.stdout and "1 passed" in run.stdout
    assert plain.returncode == 1 and "test_boom" in plain.stdout
    assert plain.bundle is None and "Verdicts par exigence" not in plain.stdout


def test_secrets_never_reach_bundle_or_terminal(runs):
    token = TOKEN
    run = runs["demo"]
    assert run.returncode == 0, run.stdout
    assert token not in run.stdout + run.stderr
    with zipfile.ZipFile(run.bundle) as zf:
        for name in zf.namelist():
            assert token.encode() not in zf.read(name), name
    assert run.manifest["target"]["credentials"]["api_token"] == "env:HARNESS_DEMO_TOKEN"
    # the token was really used: the API answered (it refuses requests without it)
    assert run.requirement_verdicts()["LES-3.1-CHANNELS"] == "PASS"


def test_english_output(runs):
    run = runs["english"]
    assert "Verdicts per requirement" in run.stdout and "Evidence bundle:" in run.stdout


def test_unreachable_vendor_gives_error_and_inconclusive_never_pass(runs):
    run = runs["unreachable"]
    assert run.returncode == 1
    verdicts = run.requirement_verdicts()
    assert verdicts["LES-3.1-UI"] == "ERROR"
    assert "PASS" not in verdicts.values(), verdicts
    assert "User interface unreachable: http://127.0.0.1:9/" in run.stdout
    assert re.search(r"\d+ error", run.stdout.splitlines()[-1])


def test_offline_mode_refuses_non_loopback_endpoints(runs):
    run = runs["offline"]
    assert run.returncode == 1
    assert run.requirement_verdicts() == {"LES-3.1-UI": "ERROR"}
    assert "Offline mode: network access refused to https://vendor.example.test/" in run.stdout
    assert run.manifest["options"]["offline"] is True


def test_defect_option_needs_the_demo_service(runs):
    run = runs["defect-no-demo"]
    assert run.returncode == 4 and "--defect applies to the embedded demo vendor only" in run.stderr
    run = runs["defect-unknown"]
    assert run.returncode == 1 and "unknown defect(s): no-such-defect" in run.stdout


def test_user_scenario_folder(runs):
    run = runs["user-folder"]
    assert run.returncode == 1
    assert [r["scenario"] for r in run.manifest["results"]] == ["acme-consistent"]
    # the check cites the requirement it proves, whatever scenario reuses it
    assert {f["rule"] for f in run.findings() if f["severity"] == "error"} == {"VER-CHAN-01"}
    assert run.requirement_verdicts() == {"ACME-1": "FAIL"}


def test_the_main_command_concludes_what_the_previous_format_concluded(demo_run):
    """The same demo, run by this version and by the version before the core's second pass
    (a bundle kept in fixtures/): the same verdicts, check steps and findings, apart from
    what was added since, each difference named here."""
    from pathlib import Path

    from harness.reporting.compare import compare_bundles
    from harness_version.browser import distribution_browser as find_browser

    earlier = Path(__file__).parents[1] / "fixtures" / "bundles" / "demo-all-format1.zip"
    result = compare_bundles(earlier, demo_run.bundle)
    assert result.scenarios_compared == 19
    # the browser's own version varies from machine to machine
    assert [re.sub(r"\((\S+) [\d.]+\)", r"(\1 VERSION)", d.render("en")) for d in result.differences] == [
        # the DMP plugin (built-in CDA checks, the DMP simulator), added since
        "requirement CISIS-BUILTIN-BODY: - (A) ≠ PASS (B)",
        "requirement CISIS-BUILTIN-HEADER: - (A) ≠ PASS (B)",
        "requirement CISIS-BUILTIN-INS: - (A) ≠ PASS (B)",
        "requirement DMP-BLOCKED: - (A) ≠ PASS (B)",
        "requirement DMP-CONSULT: - (A) ≠ PASS (B)",
        "requirement DMP-FEED: - (A) ≠ PASS (B)",
        "requirement DMP-INSI: - (A) ≠ PASS (B)",  # the INS lifecycle's notes to the DMP (issue 27)
        "requirement DMP-METADATA: - (A) ≠ PASS (B)",
        "requirement DMP-METADATA-CDA: - (A) ≠ PASS (B)",
        "requirement DMP-TLS: - (A) ≠ PASS (B)",
        "requirement DMP-VIHF: - (A) ≠ PASS (B)",
        # the e-ID rules (the PSC plugin), added since
        "requirement EID-ENROL: - (A) ≠ PASS (B)",
        "requirement EID-MFA: - (A) ≠ PASS (B)",
        "requirement EID-SESSION: - (A) ≠ PASS (B)",
        # the INS lifecycle through the INSi stand-in (issue 27), added since
        "requirement INS-INSI: - (A) ≠ PASS (B)",
        "requirement INS-INSI-UNAVAILABLE: - (A) ≠ PASS (B)",
        # the label's files (transcoding table, reversibility export: issue 30), added since
        "requirement LES-REV-COMPLETE: - (A) ≠ PASS (B)",
        "requirement LES-REV-FORMAT: - (A) ≠ PASS (B)",
        "requirement LES-REV-IDENTITY: - (A) ≠ PASS (B)",
        "requirement LES-REV-OPEN: - (A) ≠ PASS (B)",
        "requirement LES-TRANS-COVERAGE: - (A) ≠ PASS (B)",
        "requirement LES-TRANS-FILE: - (A) ≠ PASS (B)",
        "requirement LES-TRANS-MAP: - (A) ≠ PASS (B)",
        "requirement LES-TRANS-SOURCE: - (A) ≠ PASS (B)",
        "requirement LES-TRANS-TARGET: - (A) ≠ PASS (B)",
        # the MSSanté plugin (mail simulator, XDM archives), added since
        "requirement MSS-ADDRESS: - (A) ≠ PASS (B)",
        "requirement MSS-INSI: - (A) ≠ PASS (B)",  # the INS lifecycle's messages through MSSanté (issue 27)
        "requirement MSS-MESSAGE: - (A) ≠ PASS (B)",
        "requirement MSS-RECEIVE: - (A) ≠ PASS (B)",
        "requirement MSS-SUBJECT: - (A) ≠ PASS (B)",
        "requirement MSS-TRANSPORT: - (A) ≠ PASS (B)",
        # the PDSm plugin (FHIR document sharing, in front of the DMP's store), added since
        "requirement PDSM-CONSULT: - (A) ≠ PASS (B)",
        "requirement PDSM-PUBLISH: - (A) ≠ PASS (B)",
        # the Pro Santé Connect plugin (the stand-in, the login in a browser, the DMP calls
        # made through it), added since
        "requirement PSC-DMP: - (A) ≠ PASS (B)",
        "requirement PSC-LOGIN: - (A) ≠ PASS (B)",
        "requirement PSC-LOGOUT: - (A) ≠ PASS (B)",
        "requirement PSC-REFUSE: - (A) ≠ PASS (B)",
        "requirement PSC-TOKENS: - (A) ≠ PASS (B)",
        "requirement SMT-USE: - (A) ≠ PASS (B)",  # how the software consumes the terminology server (issue 28)
        "requirement XDM-ARCHIVE: - (A) ≠ PASS (B)",
        "requirement XDM-METADATA: - (A) ≠ PASS (B)",
        "requirement XDM-METADATA-CDA: - (A) ≠ PASS (B)",
        # no kit named, as before: the reason now says the pinned kit can be fetched (harness kit fetch, issue 29)
        *(f"scenario cda-kit-{s}: steps differ (verdicts, assertions or reasons)"
          for s in ("header", "content-models", "volets", "ihe", "xsd", "ans-models")),
        # the demo's documents now carry a complete CI-SIS header (custodian, authenticator,
        # service event...) and its second one is level 1: more coded values judged, the
        # same verdicts and no finding of difference
        "scenario terminology-cda-valuesets: steps differ (verdicts, assertions or reasons)",
        "scenario terminology-cda-codes: steps differ (verdicts, assertions or reasons)",
    ] + ([
        # the version judged as a person sees it in a real browser (issue 15): the element that
        # shows it, its size and contrast, and the screenshot with the version outlined; the
        # earlier bundle read the raw HTML, and was made without a browser
        "version-visible-in-ui: finding only in A: [VER-UI-02] http://127.0.0.1:PORT/ footer#about: Version shown: 3.2.1",
        "version-visible-in-ui: finding only in A: [VER-UI-03] ui.screenshot: No headless browser available: proof by extracted text only, no screenshot",
        "version-visible-in-ui: finding only in B: [VER-UI-02] http://127.0.0.1:PORT/ footer#about > p: version seen: 3.2.1 ('version 3.2.1', 16 px, 7.5:1)",
        "version-visible-in-ui: finding only in B: [VER-UI-03] ui.view/01: screenshot (" + Path(find_browser() or "chromium").name + " VERSION), the version seen outlined in red",
    ] if find_browser() else [
        "requirement LES-3.1-UI: PASS (A) ≠ INCONCLUSIVE (B)",
        "scenario version-visible-in-ui: PASS (A) ≠ INCONCLUSIVE (B)",
    ])


def test_compare_names_each_difference(runs, demo_run, capsys):
    from harness.cli import main as cli

    hidden = runs["hidden"]
    assert cli(["--lang", "en", "compare", str(demo_run.bundle), str(hidden.bundle)]) == 1
    out = capsys.readouterr().out
    assert "requirement LES-3.1-UI: PASS (A) ≠ FAIL (B)" in out
    assert "finding only in B: [VER-UI-01]" in out and "scenario version-same-in-channels missing from B" in out


def test_the_summary_names_the_defects_a_run_injected(runs):
    run = runs["hidden"]
    assert "Vendeur de démonstration : défauts injectés" in run.stdout
    assert "version-hidden : l'interface n'affiche plus le numéro de version" in run.stdout
    with zipfile.ZipFile(run.bundle) as zf:
        assert "version-hidden: the user interface no longer shows the version number" in zf.read("summary.en.txt").decode()


def test_results_and_manifest_read_back_to_what_was_written(demo_run):
    import json

    from harness.evidence.manifest import Manifest
    from harness.results import ScenarioResult

    with zipfile.ZipFile(demo_run.bundle) as zf:
        raw = json.loads(zf.read("manifest.json"))
        findings = {r["scenario"]: json.loads(zf.read(f"findings/{r['scenario']}.json")) for r in raw["results"]}
    assert Manifest.from_json(raw).to_json() == raw
    for entry in raw["results"]:
        result = ScenarioResult.from_json(entry, findings[entry["scenario"]])
        assert result.record() == entry
        assert [f.to_json() for f in result.findings] == findings[entry["scenario"]]
        assert ScenarioResult.from_json(result.to_json()).to_json() == result.to_json()
