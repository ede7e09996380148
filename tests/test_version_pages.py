"""The version rule on realistic vendor pages (``tests/vendor_pages.py``): each page rendered in
headless Chromium as the collector renders it (the same function, ``render_in``, in a browser
context of its own; a few browsers each render a share of the pages, their start paid once:
starting the browser in a process of its own, as ``render`` does, is judged end to end in
test_version_browser and test_browser), recorded as the collector records it, and judged by the
check itself; the verdict and the version read must be a person's.

The table of the closing note is this test's: pattern → what a person sees → expected verdict →
verdict."""
import hashlib
import json

import pytest

from harness import Artefact
from harness.running.checking import evaluate
from harness.running.target import Target
from harness_version.browser import CONTEXT, browser_flags, find_browser, render_in
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


def judge(browser, url: str) -> tuple[str, list[dict], dict]:
    """(verdict, findings, rendering record) of the UI rule on the page at ``url``, rendered in
    a context of its own of ``browser``."""
    engine = ocr_engine()
    context = browser.new_context(**CONTEXT)
    try:
        r = render_in(context, url, deadline=15, total=45, ocr=engine is not None, loopback_only=True, product=PRODUCT)
    finally:
        context.close()
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


def _served_and_judged(names: list[str]) -> dict[str, tuple[str, list[dict], dict]]:
    """Each page of ``names`` served and judged, in one browser."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as p:
        launch = {"executable_path": find_browser(), "args": browser_flags(True)}
        try:
            browser = p.chromium.launch(chromium_sandbox=True, **launch)
        except PlaywrightError:  # as root, without an account of its own (render() runs it as one)
            browser = p.chromium.launch(chromium_sandbox=False, **launch)
        try:
            for name in names:
                server, url = serve(CASES[name])
                try:
                    out[name] = judge(browser, url)
                except Exception as exc:  # the page's own test says it; the share goes on
                    out[name] = exc
                finally:
                    server.shutdown()
        finally:
            browser.close()
    return out


SHARES = 4  # browsers rendering the pages at once, each a share of them


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """Every page rendered and judged, the shares at once."""
    names = sorted(CASES)
    with RunPool(tmp_path_factory) as pool:
        for k in range(SHARES):
            pool.submit(f"share-{k}", _served_and_judged, names[k::SHARES])
        yield {name: pool[f"share-{k}"][name] for k in range(SHARES) for name in names[k::SHARES]}


@needs_browser
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_person_and_the_harness_agree_on_the_version_of_a_real_page(judged, name):
    case = CASES[name]
    if isinstance(judged[name], Exception):
        raise judged[name]
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
