"""Collectors: what the software shows in each channel, and what earlier bundles evidenced."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from harness import Bundle, BundleError, CollectContext, HarnessError, UnsafeInput, catalogue, collector, parse_json

from .checks import api_fields
from .extract import about_link, dig, read_page, ui_version

M = catalogue(__name__)

SCREENSHOT_TIMEOUT = 45
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """A headless-capable browser: HARNESS_BROWSER, else the usual Chromium names."""
    configured = os.environ.get("HARNESS_BROWSER")
    if configured:
        return configured if configured != "none" and shutil.which(configured) else None
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def private_env(folder: str) -> dict[str, str]:
    """The environment for a browser: its configuration and cache (crash reports included,
    which Debian's Chromium writes under ~/.config whatever its profile) in ``folder``, so
    nothing is written outside the run's own folders."""
    return {**os.environ, "XDG_CONFIG_HOME": f"{folder}/config", "XDG_CACHE_HOME": f"{folder}/cache"}


def screenshot(url: str) -> bytes | None:
    """A PNG of ``url`` from headless Chromium, or None when no browser could take it."""
    browser = find_browser()
    if browser is None:
        return None
    with tempfile.TemporaryDirectory(prefix="harness-shot-") as tmp:
        out = Path(tmp) / "page.png"
        cmd = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={tmp}/profile", "--window-size=1280,900",
            "--disable-crash-reporter", "--disable-breakpad", f"--screenshot={out}", url,
        ]
        try:
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=SCREENSHOT_TIMEOUT, check=False,
                           env=private_env(tmp))
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.read_bytes() if out.exists() and out.stat().st_size else None


def _same_origin(a: str, b: str) -> bool:
    return urlsplit(a)[:2] == urlsplit(b)[:2]


@collector(produces=["ui.exchange", "ui.page", "ui.about.exchange", "ui.about", "ui.screenshot"])
def collect_ui(ctx: CollectContext) -> dict:
    url = ctx.endpoint("ui")
    if url is None:
        raise HarnessError(M("ui.undeclared"))
    outputs = {}
    home = ctx.http.get(url, label="version.ui.page")
    outputs["ui.exchange"] = home.exchange
    if home.body:
        outputs["ui.page"] = home.body
    shown_url = url
    if home.ok:
        page = read_page(home.data)
        found = ui_version(page)
        link = about_link(page, url)
        # One click away is still "simply reachable": follow the About link when the
        # landing page's about areas do not show the version.
        if (found is None or found[1] == "body") and link and _same_origin(link, url):
            about = ctx.http.get(link, label="version.ui.about")
            outputs["ui.about.exchange"] = about.exchange
            if about.body:
                outputs["ui.about"] = about.body
                shown_url = link
    if home.ok:
        png = screenshot(shown_url)
        if png:
            outputs["ui.screenshot"] = ctx.record(png, media_type="image/png", label="version.ui.screenshot")
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


def _evidenced(bundle: Bundle, path: Path, fields: tuple[str, str]) -> dict | None:
    """The version and fingerprint an earlier bundle's API answer showed, read with the
    field settings that bundle's run used (else the current target's)."""
    m = bundle.manifest
    recorded = m.get("target", {}).get("version")
    vfield, ffield = api_fields(recorded) if isinstance(recorded, dict) else fields
    for digest in bundle.artefacts_labelled("version.api"):
        try:
            data = parse_json(bundle.read_artefact(digest), source=digest)
        except UnsafeInput:
            continue
        version, fingerprint = dig(data, vfield), dig(data, ffield)
        if isinstance(version, str) and version:
            return {"bundle": path.name, "run_id": m["run_id"], "started_at": m["started_at"], "version": version,
                    "fingerprint": fingerprint if isinstance(fingerprint, str) and fingerprint else None}
    return None


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
