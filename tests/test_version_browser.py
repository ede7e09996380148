"""The version rules judged on what a person sees (issue 15), end to end on the demo vendor:
each situation of the user interface, with a real browser and without one.

The table below is the closing note's: each situation (a demo defect) → verdict per
requirement, with a browser (Chromium driven by Playwright, Tesseract for images) and without
(``HARNESS_BROWSER=none``), plus the failing rules the browser run must show.
"""
import json
import zipfile
from pathlib import Path

import pytest

from harness_version.browser import find_browser
from harness_version.ocr import engine as ocr_engine
from tests.harness_run import RunPool, run_harness

needs_browser = pytest.mark.skipif(find_browser() is None, reason="no Chromium (apt-get install chromium; CI installs it)")
needs_ocr = pytest.mark.skipif(ocr_engine() is None, reason="no Tesseract with fra+eng (apt-get install tesseract-ocr tesseract-ocr-fra; CI installs it)")

REQS = ("LES-3.1-UI", "LES-3.1-DECL", "LES-3.1-SCHEME", "LES-3.1-CHRONO", "LES-3.1-CHANGE", "LES-3.1-CHANNELS")
P, F, I = "PASS", "FAIL", "INCONCLUSIVE"


def _row(ui=P, decl=P, channels=P) -> dict:
    return dict(zip(REQS, (ui, decl, P, P, P, channels)))


# A UI that shows no version a person sees leaves the UI/API comparison INCONCLUSIVE (one
# channel); the documents are compared with the API then.
HIDDEN, UNPROVEN = _row(ui=F, channels=I), _row(ui=I, channels=I)
# situation (demo defect, "" = conformant) → (with a browser, without, failing rules with a browser,
# informative rules with a browser)
SITUATIONS = {
    "": (_row(), UNPROVEN, set(), {"VER-UI-02", "VER-UI-03"}),
    "version-css-hidden": (HIDDEN, UNPROVEN, {"VER-UI-01"}, {"VER-UI-05"}),
    "version-same-colour": (HIDDEN, UNPROVEN, {"VER-UI-01"}, {"VER-UI-05"}),
    "version-font-zero": (HIDDEN, UNPROVEN, {"VER-UI-01"}, {"VER-UI-05"}),
    "version-off-screen": (HIDDEN, UNPROVEN, {"VER-UI-01"}, {"VER-UI-05"}),
    "version-closed-dialog": (HIDDEN, UNPROVEN, {"VER-UI-01"}, {"VER-UI-05"}),
    "version-by-script": (_row(), UNPROVEN, set(), {"VER-UI-02"}),
    "version-v-prefix": (_row(), UNPROVEN, set(), {"VER-UI-02"}),
    "version-label-words": (_row(), UNPROVEN, set(), {"VER-UI-02"}),
    "version-unrelated-only": (HIDDEN, UNPROVEN, {"VER-UI-01"}, {"VER-UI-06"}),
    # the header's 3.3.0 comes first: it is also the version the declaration and the channels see
    "version-two-versions": (_row(ui=F, decl=F, channels=F), UNPROVEN, {"VER-UI-04", "VER-DECL-01", "VER-CHAN-01"}, {"VER-UI-02"}),
    "version-login-redirect": (_row(), UNPROVEN, set(), {"VER-UI-08", "VER-UI-02"}),
    "version-about-dialog": (_row(), UNPROVEN, set(), {"VER-UI-02"}),
    "version-document-differs": (_row(channels=F), _row(ui=I, channels=F), {"VER-CHAN-01"}, {"VER-UI-02"}),
    "version-hidden": (HIDDEN, UNPROVEN, {"VER-UI-01"}, set()),
}
# the situations of the page alone are run without the documents' scenario (which asks the demo
# for a DMP submission and an MSSanté message: a slower run); these are run whole
WHOLE = {"", "version-two-versions", "version-document-differs"}
PAGE_ONLY = ("version-visible-in-ui", "version-matches-declared", "version-orderable-scheme", "version-later-than-evidenced",
             "version-changes-with-build", "version-same-in-channels")
# without a browser, every requirement is run for these (where the UI's version differs from
# the other channels, or the documents do); the UI rule alone for the others
WHOLE_WITHOUT_BROWSER = {"", "version-two-versions", "version-document-differs"}
REASON = {"version-css-hidden": "not rendered", "version-same-colour": "contrast", "version-font-zero": "font too small",
          "version-off-screen": "off the page", "version-closed-dialog": "closed dialog"}


def _args(defect: str) -> tuple[str, ...]:
    scenarios = ("version",) if defect in WHOLE else PAGE_ONLY
    return (*[a for sc in scenarios for a in ("--scenario", sc)], "--lang", "en", *(("--defect", defect) if defect else ()))


NO_BROWSER = {"HARNESS_BROWSER": "none"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every run of the module, started at once (tests/harness_run.py): each situation with
    a browser and without, the image read by OCR or left to a person, the conformant demo,
    and the history built from three releases (one after the other, in one folder)."""
    with RunPool(tmp_path_factory) as pool:
        browser = find_browser() is not None
        if browser:  # three runs one after the other: started first, so that they do not end last
            pool.submit("history", _history, tmp_path_factory.mktemp("history"))
        for defect in sorted(SITUATIONS):
            if browser:  # the conformant one ("") is the demo's version run tests/test_reports.py judges too: made once
                pool.harness(f"with/{defect}", *_args(defect), shared=not defect)
        for defect in sorted([*SITUATIONS, "version-in-image"]):
            if defect in WHOLE_WITHOUT_BROWSER:
                pool.harness(f"without/{defect}", *_args(defect), env=NO_BROWSER)
            else:  # the situation changes only the page: the UI rule is the one a browser decides (a quicker run)
                pool.harness(f"without/{defect}", "--scenario", "version-visible-in-ui", "--lang", "en", "--defect", defect, env=NO_BROWSER)
        if browser:
            pool.harness("ocr", "--scenario", "version-visible-in-ui", "--lang", "en", "--defect", "version-in-image")
            pool.harness("no-ocr", "--scenario", "version-visible-in-ui", "--lang", "en", "--defect", "version-in-image",
                         env={"HARNESS_OCR": "none"})
        yield pool


def _by_rule(run) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for f in run.findings():
        out.setdefault(f["rule"], []).append(f)
    return out


@needs_browser
@pytest.mark.slow
@pytest.mark.parametrize("defect", sorted(SITUATIONS))
def test_each_situation_with_a_browser(runs, defect):
    expected, _, failing, informative = SITUATIONS[defect]
    run = runs[f"with/{defect}"]
    assert run.requirement_verdicts() == expected, run.stdout
    rules = _by_rule(run)
    assert {f["rule"] for f in run.findings() if f["severity"] in ("error", "critical")} == failing
    assert informative <= set(rules), rules.keys()
    if defect in REASON:  # the version is in the page; why a person does not see it is said
        assert any(REASON[defect] in f["message"]["en"] for f in rules["VER-UI-05"]), rules["VER-UI-05"]
    if defect == "version-unrelated-only":
        [ignored] = rules["VER-UI-06"]
        assert "'version 1.40.13'" in ignored["message"]["en"] and "main" in ignored["location"]
    if defect == "version-about-dialog":
        [seen] = rules["VER-UI-02"]
        assert 'one click away, through "À propos"' in seen["message"]["en"] and "dialog#apropos" in seen["location"]
    if defect == "version-login-redirect":
        assert rules["VER-UI-08"][0]["message"]["en"].startswith("redirected to http://127.0.0.1:")
        assert "/login footer#about" in rules["VER-UI-02"][0]["location"]
    if defect == "version-two-versions":
        [two] = rules["VER-UI-04"]
        assert "3.3.0" in two["message"]["en"] and "3.2.1" in two["message"]["en"]
    if defect == "version-document-differs":
        assert all(("doc" in f["location"] or "mss-doc" in f["location"] or "dmp-doc" in f["location"]) and "softwareName" in f["location"]
                   for f in rules["VER-CHAN-01"])
        assert {f["location"].split("/")[0] for f in rules["VER-CHAN-01"]} >= {"doc-live", "dmp-doc", "mss-doc"}


@pytest.mark.slow
@pytest.mark.parametrize("defect", sorted([*SITUATIONS, "version-in-image"]))
def test_each_situation_without_a_browser(runs, defect):
    """No browser: visibility is not proven (INCONCLUSIVE, never PASS or FAIL from the raw
    HTML); the other rules are judged on the other channels."""
    expected = SITUATIONS[defect][1] if defect in SITUATIONS else _row(ui=I)
    run = runs[f"without/{defect}"]
    if defect not in WHOLE_WITHOUT_BROWSER:  # the UI rule alone was run
        expected = {"LES-3.1-UI": expected["LES-3.1-UI"]}
    assert run.requirement_verdicts() == expected, run.stdout
    [ui] = [r for r in run.manifest["results"] if r["scenario"] == "version-visible-in-ui"]
    assert "no headless browser" in ui["checks"][0]["reasons"][0]["en"]
    assert all(f["severity"] == "info" for f in _by_rule(run).get("VER-UI-09", []))


@needs_browser
@needs_ocr
@pytest.mark.slow
def test_a_version_drawn_in_an_image_is_read_by_ocr_with_its_confidence(runs):
    run = runs["ocr"]
    assert run.requirement_verdicts() == {"LES-3.1-UI": "PASS"}, run.stdout
    rules = _by_rule(run)
    [ocr] = rules["VER-UI-10"]
    assert "tesseract" in ocr["message"]["en"] and "'Version 3.2.1'" in ocr["message"]["en"]
    with zipfile.ZipFile(run.bundle) as zf:
        crop = zf.read(f"artefacts/{ocr['artefact']}")
        assert crop.startswith(b"\x89PNG")
        rendering = _rendering(zf, run.manifest)
    [image] = [i for v in rendering["views"] for i in v["images"] if i["ocr"] and i["ocr"]["version"]][:1]
    assert image["ocr"]["confidence"] >= 60 and image["kind"] == "img" and "footer#about" in image["path"]


@needs_browser
@pytest.mark.slow
def test_a_version_only_in_an_image_without_ocr_waits_for_a_person_with_the_cropped_image(runs):
    run = runs["no-ocr"]
    assert run.requirement_verdicts() == {"LES-3.1-UI": "MANUAL_PENDING"}, run.stdout
    pending = _by_rule(run)["VER-UI-11"]
    assert pending and all("no OCR engine" in f["message"]["en"] for f in pending)
    with zipfile.ZipFile(run.bundle) as zf:
        for f in pending:
            assert zf.read(f"artefacts/{f['artefact']}").startswith(b"\x89PNG")


def _rendering(zf: zipfile.ZipFile, manifest: dict) -> dict:
    [digest] = [d for d, a in manifest["artefacts"].items() if a["label"] == "version.ui.rendering"]
    return json.loads(zf.read(f"artefacts/{digest}"))


@needs_browser
@pytest.mark.slow
def test_the_conformant_demo_seals_the_outlined_screenshot_and_the_rendered_facts_and_replays_without_a_browser(runs, monkeypatch):
    from io import BytesIO

    from PIL import Image

    from harness.cli import main as cli

    run = runs["with/"]  # --scenario version --lang en, with a browser
    assert set(run.requirement_verdicts().values()) == {"PASS"}, run.stdout
    [seen] = _by_rule(run)["VER-UI-02"]
    [shot] = _by_rule(run)["VER-UI-03"]
    with zipfile.ZipFile(run.bundle) as zf:
        rendering = _rendering(zf, run.manifest)
        png = Image.open(BytesIO(zf.read(f"artefacts/{shot['artefact']}"))).convert("RGB")
    view = rendering["views"][int(shot["location"].split("/")[1]) - 1]
    candidate = view["candidates"][view["outlined"]]
    # the DOM path and the computed style of the element that showed it, recorded
    assert candidate["path"] in seen["location"] and candidate["style"]["font_size"] >= 9
    assert {"color", "background", "opacity", "display", "visibility"} <= set(candidate["style"])
    assert rendering["thresholds"] == {"min_font_px": 9.0, "min_contrast": 4.5, "min_contrast_large": 3.0, "ocr_min_confidence": 60.0}
    # the red outline drawn around the version on the screenshot
    box = candidate["box"]
    edge = [png.getpixel((int(box["x"] + box["width"] / 2), int(box["y"]) - 2 + dy)) for dy in range(-2, 2)]
    assert any(r > 200 and g < 60 and b < 60 for r, g, b in edge), edge
    # replay needs no browser: the rendered facts are in the bundle
    monkeypatch.setenv("HARNESS_BROWSER", "none")
    assert cli(["verify", "--replay", str(run.bundle)]) == 0


def _history(tmp_path: Path):
    """Three releases of a product with no API, one after the other in one folder."""
    demo = (Path(__file__).parents[1] / "plugins" / "harness_demo" / "target.toml").read_text()

    def target(release: str) -> Path:
        text = demo.replace('api = "service://demo-vendor/api/about"\n', "").replace('bundles = ["history"]', 'bundles = ["reports"]')
        text = text.replace('version = "3.2.1"', f'version = "{release}"').replace("defects = []", f'defects = []\nrelease = "{release}"')
        path = tmp_path / f"no-api-{release}.toml"
        path.write_text(text)
        return path

    args = ("--scenario", "version-later-than-evidenced", "--scenario", "version-changes-with-build", "--lang", "en")
    return [run_harness(tmp_path, *args, "--target", str(target(release))) for release in ("3.1.0", "3.2.1", "3.0.4")]


@needs_browser
@pytest.mark.slow
def test_a_product_with_no_api_builds_its_history_from_what_its_ui_showed(runs):
    """Earlier bundles supply the history from whichever channel they recorded: here the UI
    as a person saw it, the product having no API. Chronology is judged; a change of code
    cannot be (no build fingerprint): INCONCLUSIVE."""
    first, newer, older = runs["history"]
    assert first.requirement_verdicts() == {"LES-3.1-CHRONO": "INCONCLUSIVE", "LES-3.1-CHANGE": "INCONCLUSIVE"}, first.stdout
    assert newer.requirement_verdicts() == {"LES-3.1-CHRONO": "PASS", "LES-3.1-CHANGE": "INCONCLUSIVE"}, newer.stdout
    with zipfile.ZipFile(newer.bundle) as zf:
        [digest] = [d for d, a in newer.manifest["artefacts"].items() if a["label"] == "version.history"]
        records = json.loads(zf.read(f"artefacts/{digest}"))["records"]
    assert [(r["version"], r["channel"], r["fingerprint"]) for r in records] == [("3.1.0", "ui", None)]
    assert older.requirement_verdicts()["LES-3.1-CHRONO"] == "FAIL", older.stdout
