"""Collectors: what the software shows in each channel, and what earlier bundles evidenced."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from harness import Bundle, BundleError, CollectContext, HarnessError, UnsafeInput, catalogue, collector, parse_json, parse_xml

from .checks import api_fields
from .extract import dig, read_page, ui_version
from .visible import number_of, rendered_version

M = catalogue(__name__)

def _same_origin(a: str, b: str) -> bool:
    return urlsplit(a)[:2] == urlsplit(b)[:2]


MAX_REDIRECTS = 5
RENDER_STEP = 20.0  # seconds a browser step may take (loading a page, a click, a screenshot); 3 of them in all


def _fetch_page(ctx: CollectContext, url: str, outputs: dict):
    """The page as the server sends it, redirects on the same origin followed (a product whose
    ``/`` sends to its login page is reachable): each hop's exchange recorded."""
    res = ctx.http.get(url, label="version.ui.page")
    outputs["ui.exchange"] = res.exchange
    current = url
    for hop in range(1, MAX_REDIRECTS + 1):
        location = res.headers.get("Location") if res.status in (301, 302, 303, 307, 308) else None
        if not location or not _same_origin(urljoin(current, location), url):
            break
        current = urljoin(current, location)
        res = ctx.http.get(current, label=f"version.ui.redirect:{hop}")
        outputs[f"ui.hop.exchange/{hop:02d}"] = res.exchange
    if res.body:
        outputs["ui.page"] = res.body
    return res


def _rendering(ctx: CollectContext, url: str, outputs: dict) -> dict:
    """What a person sees, rendered in a real browser; the facts recorded, each view's
    screenshot and each image crop as artefacts of their own."""
    from . import ocr
    from .browser import MIN_CONTRAST, MIN_CONTRAST_LARGE, MIN_FONT_PX, find_browser, render

    thresholds = {"min_font_px": MIN_FONT_PX, "min_contrast": MIN_CONTRAST, "min_contrast_large": MIN_CONTRAST_LARGE,
                  "ocr_min_confidence": ocr.MIN_CONFIDENCE}
    executable = find_browser()
    if executable is None:
        return {"url": url, "browser": None, "error": "no-browser", "thresholds": thresholds, "views": []}
    engine = ocr.engine()
    # a browser step waits no longer than the target allows an exchange ([network] deadline)
    step = min(RENDER_STEP, float(ctx.target.section("network").get("deadline") or RENDER_STEP))
    r = render(url, deadline=step, total=3 * step, browser=executable, loopback_only=ctx.offline, ocr=engine is not None,
               product=ctx.target.product.get("name", ""))
    views = []
    for n, view in enumerate(r.views, 1):
        record = view.to_json()
        shot = ctx.record(view.screenshot, media_type="image/png", label=f"version.ui.view:{n:02d}")
        record["screenshot"] = f"ui.view/{n:02d}"
        outputs[record["screenshot"]] = shot
        for k, image in enumerate(view.images, 1):
            name = f"ui.image/{n:02d}-{k}"
            outputs[name] = ctx.record(image["crop"], media_type="image/png", label=f"version.ui.image:{n:02d}-{k}")
            record["images"][k - 1]["crop"] = name
        views.append(record)
    return {"url": url, "final_url": r.final_url, "status": r.status, "browser": r.browser or executable, "error": r.error,
            "ocr": engine, "thresholds": thresholds, "views": views, "requests": r.requests, "skipped": r.skipped, "sandbox": r.sandbox}


@collector(produces=["ui.exchange", "ui.hop.exchange", "ui.page", "ui.rendering", "ui.view", "ui.image"], once_per_run=True)
def collect_ui(ctx: CollectContext) -> dict:
    """The user interface: the page as served (reachability), and as a person sees it in a real
    headless Chromium (``ui.rendering``: each version text with its box and computed style, the
    about page or dialog one click away, images read by OCR, screenshots with the version
    outlined). Without a browser the rendering says so, and visibility is not proven."""
    url = ctx.endpoint("ui")
    if url is None:
        raise HarnessError(M("ui.undeclared"))
    outputs: dict = {}
    page = _fetch_page(ctx, url, outputs)
    if page.status is None:  # no answer at all (refused, timed out): a browser would only wait again
        rendering = {"url": url, "browser": None, "error": "unreachable", "views": []}
    else:
        rendering = _rendering(ctx, url, outputs)
    outputs["ui.rendering"] = ctx.record_json(rendering, label="version.ui.rendering")
    return outputs


@collector(produces=["api.exchange", "api.about"])
def collect_api(ctx: CollectContext) -> dict:
    url = ctx.endpoint("api")
    if url is None:
        return {}
    token = ctx.target.secret("api_token")
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    res = ctx.http.get(url, label="version.api", headers=headers)
    outputs = {"api.exchange": res.exchange}
    if res.body:
        outputs["api.about"] = res.body
    return outputs


_DOC_LABELS = ("cda.document:", "dmp.document:", "mssante.document:")


def _api_version(bundle: Bundle, fields: tuple[str, str]) -> tuple[str, str | None] | None:
    vfield, ffield = fields
    for digest in bundle.artefacts_labelled("version.api"):
        try:
            data = parse_json(bundle.read_artefact(digest), source=digest)
        except UnsafeInput:
            continue
        version, fingerprint = dig(data, vfield), dig(data, ffield)
        if isinstance(version, str) and version:
            return version, fingerprint if isinstance(fingerprint, str) and fingerprint else None
    return None


def _ui_version(bundle: Bundle, product_name: str) -> str | None:
    """What the bundle's user interface showed: as a person saw it (a rendering), else, for
    bundles written before the browser, as its raw page read."""
    for digest in bundle.artefacts_labelled("version.ui.rendering"):
        try:
            found = rendered_version(parse_json(bundle.read_artefact(digest), source=digest), product_name)
        except UnsafeInput:
            continue
        if found:
            return found
    for digest in bundle.artefacts_labelled("version.ui.page"):
        found = ui_version(read_page(bundle.read_artefact(digest)))
        if found and found[1] != "body":
            return found[0]
    return None


def _document_version(bundle: Bundle) -> str | None:
    for digest, meta in sorted(bundle.manifest.get("artefacts", {}).items()):
        if str(meta.get("label", "")).startswith(_DOC_LABELS):
            try:
                root = parse_xml(bundle.read_artefact(digest), source=digest).getroot()
            except UnsafeInput:
                continue
            for field in ("softwareName", "manufacturerModelName"):
                el = root.find(f"cda:author/cda:assignedAuthor/cda:assignedAuthoringDevice/cda:{field}", {"cda": "urn:hl7-org:v3"})
                version = number_of(el.text or "") if el is not None else None
                if version:
                    return version
    return None


def _evidenced(bundle: Bundle, path: Path, fields: tuple[str, str]) -> dict | None:
    """The version an earlier bundle evidenced, from whichever channel it recorded: the user
    interface (as a person saw it), the API (with its build fingerprint), else the documents
    the software produced; read with the field settings that bundle's run used (else the
    current target's)."""
    m = bundle.manifest
    target = m.get("target", {})
    recorded = target.get("version")
    fields = api_fields(recorded) if isinstance(recorded, dict) else fields
    api = _api_version(bundle, fields)
    ui = _ui_version(bundle, str(target.get("product", {}).get("name", "")))
    if ui is not None:
        channel, version = "ui", ui
    elif api is not None:
        channel, version = "api", api[0]
    else:
        channel, version = "document", _document_version(bundle)
    if version is None:
        return None
    return {"bundle": path.name, "run_id": m["run_id"], "started_at": m["started_at"], "version": version, "channel": channel,
            "fingerprint": api[1] if api and api[0] == version else None}


@collector(produces=["history"])
def collect_history(ctx: CollectContext) -> dict:
    """Earlier bundles of the same product: their run, version and build fingerprint."""
    product = ctx.target.product["id"]
    fields = api_fields(ctx.target.section("version"))
    records, skipped = [], []
    for folder in ctx.target.history_dirs:
        if not folder.is_dir():
            skipped.append({"bundle": str(folder), "reason": M("history.folder_not_found").texts()})
            continue
        for path in sorted(folder.glob("*.zip")):
            try:
                with Bundle(path) as bundle:
                    if bundle.manifest.get("target", {}).get("product", {}).get("id") != product:
                        continue
                    record = _evidenced(bundle, path, fields)
                    if record is not None:
                        records.append(record)
            except (BundleError, UnsafeInput) as exc:
                skipped.append({"bundle": path.name, "reason": exc.messages})
    records.sort(key=lambda r: (r["started_at"], r["run_id"]))
    summary = {"product": product, "records": records, "skipped": skipped}
    art = ctx.record(json.dumps(summary, sort_keys=True, ensure_ascii=False).encode("utf-8"), media_type="application/json", label="version.history")
    return {"history": art}
