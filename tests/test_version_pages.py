"""The version rule on realistic vendor pages (``tests/vendor_pages.py``): each page rendered in
headless Chromium as the collector renders it, recorded as the collector records it, and judged
by the check itself; the verdict and the version read must be a person's.

The table of the closing note is this test's: pattern → what a person sees → expected verdict →
verdict."""
import hashlib
import json

import pytest

from harness import Artefact
from harness.running.checking import evaluate
from harness.running.target import Target
from harness_version.browser import find_browser, render
from harness_version.checks import check_visible_in_ui
from harness_version.ocr import engine as ocr_engine
from tests.checking import registry, scenario
from tests.harness_run import RunPool
from tests.vendor_pages import CASES, DECLARED, PRODUCT, serve

needs_browser = pytest.mark.skipif(find_browser() is None, reason="no Chromium (apt-get install chromium; CI installs it)")
TARGET = Target.from_record({"product": {"id": "com.example.ordocabinet", "name": PRODUCT, "version": DECLARED}}, {})


def _record(store: dict, data: bytes, media: str, label: str) -> Artefact:
    digest = hashlib.sha256(data).hexdigest()
    store[digest] = data
    return Artefact(digest, len(data), media, label)


def judge(url: str) -> tuple[str, list[dict], dict]:
    """(verdict, findings, rendering record) of the UI rule on the page at ``url``."""
    engine = ocr_engine()
    r = render(url, deadline=15, total=45, ocr=engine is not None, loopback_only=True, product=PRODUCT)
    store: dict[str, bytes] = {}
    inputs: dict[str, Artefact] = {}
    views = []
    for n, view in enumerate(r.views, 1):
        record = view.to_json()
        record["screenshot"] = f"ui.view/{n:02d}"
        inputs[record["screenshot"]] = _record(store, view.screenshot, "image/png", "view")
        for k, image in enumerate(view.images, 1):
            inputs[f"ui.image/{n:02d}-{k}"] = _record(store, image["crop"], "image/png", "image")
            record["images"][k - 1]["crop"] = f"ui.image/{n:02d}-{k}"
        views.append(record)
    rendering = {"url": url, "final_url": r.final_url, "status": r.status, "browser": r.browser, "error": r.error, "ocr": engine,
                 "thresholds": {"ocr_min_confidence": 80}, "views": views, "requests": r.requests, "skipped": r.skipped}
    inputs["ui.rendering"] = _record(store, json.dumps(rendering).encode(), "application/json", "rendering")
    inputs["ui.exchange"] = _record(store, json.dumps({"url": url, "status": 200, "error": None}).encode(), "application/json", "exchange")
    verdict, _, found = evaluate(scenario(), inputs, store.__getitem__, TARGET, registry(c=check_visible_in_ui), [])
    return verdict.value, [f.to_json() for f in found], rendering


def _text(f) -> str:
    message = f.get("message") if isinstance(f, dict) else None
    return json.dumps(message, ensure_ascii=False) if message is not None else ""


def _served_and_judged(case) -> tuple[str, list[dict], dict]:
    server, url = serve(case)
    try:
        return judge(url)
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """Every page rendered and judged, several at once (each render is a browser of its own)."""
    with RunPool(tmp_path_factory) as pool:
        for name in sorted(CASES):
            pool.submit(name, _served_and_judged, CASES[name])
        yield pool


@needs_browser
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_person_and_the_harness_agree_on_the_version_of_a_real_page(judged, name):
    case = CASES[name]
    verdict, findings, rendering = judged[name]
    rules = {f["rule"] for f in findings}
    assert verdict == case.verdict, (name, verdict, [(f["rule"], _text(f)[:200]) for f in findings], rendering.get("error"))
    if case.version is not None:
        seen = [f for f in findings if f["rule"] == "VER-UI-02"]
        assert seen and case.version in _text(seen[0]), (name, [_text(f)[:200] for f in seen])
    assert set(case.rules) <= rules, (name, rules)
    # each finding cites the requirement of the scenario the check ran for (here a scenario
    # "s" proving R-1), never one the check would name on its own
    assert {f["requirement"] for f in findings} <= {"R-1"}, {f["requirement"] for f in findings}
    if case.verdict == "FAIL":  # the finding says what was seen, where, and what to change
        failing = [f for f in findings if f["rule"] in ("VER-UI-01", "VER-UI-04")]
        assert failing and all("To do" in _text(f) and "À faire" in _text(f) for f in failing), failing
