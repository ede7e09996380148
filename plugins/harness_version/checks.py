"""Checks of the label's version-number rules: pure functions of the recorded inputs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lxml import etree

from harness import CheckContext, Evaluation, Localized, Severity, Text, UnsafeInput, catalogue, check

from .browser import contrast
from .extract import dig, read_page, ui_version, version_key
from .visible import Reading, Shown, compatible, number_of, read_rendering

M = catalogue(__name__)
UI = ("ui.exchange", "ui.hop.exchange", "ui.page", "ui.rendering", "ui.view", "ui.image")
LEGACY_UI = ("ui.about.exchange", "ui.about", "ui.screenshot")  # what bundles written before the browser hold
API = ("api.exchange", "api.about")
# the documents the software produced: the target's files and live index, its DMP
# submissions and its MSSanté archives
DOCS = ("doc", "doc-live", "dmp-doc", "mss-doc")
# A finding cites the requirement of the scenario its check runs for (its evaluation's): the
# built-in scenarios' (LES-3.1-*), or a third party's that uses these checks.

# why a person does not see a version text (browser.judge_visible's reasons)
REASONS = {
    "not-rendered": M("reason.not-rendered"),
    "closed-dialog": M("reason.closed-dialog"),
    "no-size": M("reason.no-size"),
    "off-screen": M("reason.off-screen"),
    "transparent": M("reason.transparent"),
    "font-too-small": M("reason.font-too-small"),
    "low-contrast": M("reason.low-contrast"),
}


@dataclass
class Seen:
    channel: str
    version: str
    location: str
    artefact: str


def _exchange(ctx: CheckContext, name: str) -> dict | None:
    return ctx.json(name) if ctx.has(name) else None


def _failure(exchange: dict) -> Localized | str:
    """Why an exchange failed, as recorded: a text per language (earlier bundles: one text)."""
    error = exchange.get("error")
    return Text.of(error) if isinstance(error, dict) else (error or "-")


def _reachable(exchange: dict | None) -> bool:
    return bool(exchange) and exchange.get("error") is None and exchange.get("status") == 200


def _final_exchange(ctx: CheckContext) -> dict | None:
    """The UI page's exchange once same-origin redirects were followed (a login page)."""
    hops = sorted(ctx.items("ui.hop.exchange"))
    return _exchange(ctx, f"ui.hop.exchange/{hops[-1]}") if hops else _exchange(ctx, "ui.exchange")


def _legacy_ui_seen(ctx: CheckContext) -> tuple[bool, Seen | None]:
    """Bundles written before the browser (no ``ui.rendering``): the version read in the raw
    HTML, as those bundles' checks read it, so that their replay concludes what they did."""
    home_ex = _exchange(ctx, "ui.exchange")
    if not _reachable(home_ex) or not ctx.has("ui.page"):
        return False, None
    home = ui_version(read_page(ctx.read("ui.page")))
    if home and home[1] != "body":
        return True, Seen("ui", home[0], f"{home_ex['url']} {home[1]}", ctx.artefact("ui.page").sha256)
    about_ex = _exchange(ctx, "ui.about.exchange")
    if _reachable(about_ex) and ctx.has("ui.about"):
        about = ui_version(read_page(ctx.read("ui.about")))
        if about:
            return True, Seen("ui", about[0], f"{about_ex['url']} {about[1]}", ctx.artefact("ui.about").sha256)
    if home:
        return True, Seen("ui", home[0], f"{home_ex['url']} body", ctx.artefact("ui.page").sha256)
    return True, None


def _shot(ctx: CheckContext, rendering: dict, view: int) -> str | None:
    name = rendering["views"][view].get("screenshot")
    return ctx.artefact(name).sha256 if name and ctx.has(name) else None


def _rendered(ctx: CheckContext) -> tuple[dict, Reading] | None:
    """The recorded rendering and what it shows, when a browser rendered the page."""
    if not ctx.has("ui.rendering"):
        return None
    rendering = ctx.json("ui.rendering")
    if rendering.get("error") or not rendering.get("views"):
        return None
    return rendering, read_rendering(rendering, ctx.target.product.get("name", ""))


def ui_seen(ctx: CheckContext) -> tuple[bool, Seen | None]:
    """(UI reachable, the product's version a person sees there). Without a browser nothing is
    seen: the raw HTML does not say what a person sees (issue 15)."""
    if not ctx.has("ui.rendering"):
        return _legacy_ui_seen(ctx)
    rendered = _rendered(ctx)
    if rendered is None:
        return _reachable(_final_exchange(ctx)), None
    rendering, reading = rendered
    shown = reading.version
    if shown is None:
        return True, None
    return True, Seen("ui", shown.version, shown.location, _shot(ctx, rendering, shown.view) or ctx.artefact("ui.rendering").sha256)


def api_fields(conf: dict) -> tuple[str, str]:
    """Where the API puts the version and the build fingerprint (``[version]`` section)."""
    return conf.get("api_version_field", "version"), conf.get("api_fingerprint_field", "build.fingerprint")


def api_seen(ctx: CheckContext) -> tuple[Seen | None, str | None, Localized | None]:
    """(version the API reports, build fingerprint, why the API could not be read)."""
    ex = _exchange(ctx, "api.exchange")
    if ex is None:
        return None, None, None  # the target exposes no API channel
    if not _reachable(ex) or not ctx.has("api.about"):
        if ex.get("error") is not None:
            return None, None, M("api.failed", url=ex["url"], error=_failure(ex))
        return None, None, M("api.unreadable", url=ex["url"], detail=f"HTTP {ex.get('status')}")
    try:
        data: Any = ctx.json("api.about")
    except UnsafeInput as exc:
        return None, None, M("api.invalid_json", url=ex["url"], error=exc.detail)
    vfield, ffield = api_fields(ctx.target.section("version"))
    version, fingerprint = dig(data, vfield), dig(data, ffield)
    seen = Seen("api", version, f"{ex['url']} $.{vfield}", ctx.artefact("api.about").sha256) if isinstance(version, str) and version else None
    return seen, (fingerprint if isinstance(fingerprint, str) and fingerprint else None), None


def _current(ctx: CheckContext) -> Seen | None:
    _, ui = ui_seen(ctx)
    return ui or api_seen(ctx)[0]


def _style(s: Shown) -> str:
    st = s.style
    if s.source == "ocr":
        return f"OCR {s.confidence}"
    if not st:
        return "-"
    return f"{st.get('font_size')} px, {contrast(st.get('color', ''), st.get('background', '')):.1f}:1"


def _reasons(s: Shown) -> Localized:
    return Text.of({lang: ", ".join(REASONS[r].render(lang) for r in s.reasons if r in REASONS) for lang in ("fr", "en")})


@check(reads=UI, optional=LEGACY_UI)
def check_visible_in_ui(ctx: CheckContext, ev: Evaluation) -> None:
    if not ctx.has("ui.rendering"):
        _legacy_visible(ctx, ev)
        return
    rendering = ctx.json("ui.rendering")
    final = _final_exchange(ctx) or {}
    first = _exchange(ctx, "ui.exchange") or {}
    status = rendering.get("status")
    if not _reachable(final) and not (isinstance(status, int) and 200 <= status < 300):
        if final.get("status") == 200:  # it answered, but the answer could not be read (too large, cut)
            ev.error(M("ui.unreadable", url=final.get("url") or first.get("url"), status=200, error=_failure(final)))
        else:
            ev.error(M("ui.unreachable", url=first.get("url"), status=final.get("status"), error=_failure(final)))
        return
    if final is not first and final.get("url") != first.get("url"):
        ev.add(rule="VER-UI-08", location=first.get("url", "-"), message=M("ui.redirected", url=final.get("url")))
    if rendering.get("error") == "no-browser":
        ev.inconclusive(M("ui.no_browser_inconclusive"))
        raw = ui_version(read_page(ctx.read("ui.page"))) if ctx.has("ui.page") else None
        if raw:
            ev.add(rule="VER-UI-09", location=f"{final.get('url')} {raw[1]}", artefact=ctx.artefact("ui.page").sha256,
                   message=M("ui.raw_only", version=raw[0]))
        return
    if rendering.get("error") or not rendering.get("views"):
        ev.error(M("ui.browser_failed", browser=rendering.get("browser") or "-", error=rendering.get("error") or "-"))
        return
    reading = read_rendering(rendering, ctx.target.product.get("name", ""))
    for s in reading.hidden:
        ev.add(rule="VER-UI-05", location=s.location, artefact=_shot(ctx, rendering, s.view),
               message=M("ui.hidden", text=s.text, reasons=_reasons(s)))
    for s in reading.elsewhere:
        ev.add(rule="VER-UI-06", location=s.location, artefact=_shot(ctx, rendering, s.view),
               message=M("ui.not_product", text=s.text))
    if reading.components:
        ev.add(rule="VER-UI-12", location=reading.components[0].location,
               artefact=_shot(ctx, rendering, reading.components[0].view),
               message=M("ui.components", items="; ".join(f"{c.owner} {c.version} ({c.location})" for c in reading.components[:10])))
    views = rendering["views"]
    for n, k, text in reading.unread:
        image = views[n]["images"][k]
        ev.add(rule="VER-UI-07", location=f"{views[n]['url']} {image.get('path')}", artefact=_crop(ctx, image),
               message=M("ui.image_no_version", text=text[:120] or "-"))
    shown = reading.version
    if shown is not None:
        ev.check(True, rule="VER-UI-01", location=shown.location, message=M("ui.no_version"))
        via = views[shown.view].get("via")
        ev.add(rule="VER-UI-02", location=shown.location, artefact=_shot(ctx, rendering, shown.view),
               message=M("ui.seen", version=shown.version, text=shown.text, style=_style(shown)) if via is None else
               M("ui.seen_one_click", version=shown.version, text=shown.text, style=_style(shown), via=via))
        if shown.source == "ocr":
            image = views[shown.view]["images"][rendering["views"][shown.view].get("outlined_image") or 0]
            ev.add(rule="VER-UI-10", location=shown.location, artefact=_crop(ctx, image),
                   message=M("ui.ocr_read", engine=rendering.get("ocr") or "-", text=shown.text, confidence=shown.confidence))
        for other in reading.conflicts():
            ev.check(False, rule="VER-UI-04", location=other.location, artefact=_shot(ctx, rendering, other.view),
                     message=M("ui.two_versions", version=shown.version, where=shown.location, other=other.version,
                               other_where=other.location))
        ev.add(rule="VER-UI-03", location=f"ui.view/{shown.view + 1:02d}", artefact=_shot(ctx, rendering, shown.view),
               message=M("ui.outlined", browser=rendering.get("browser") or "-"))
        return
    if reading.pending:
        for n, k in reading.pending:
            image = views[n]["images"][k]
            ev.add(rule="VER-UI-11", location=f"{views[n]['url']} {image.get('path')}", artefact=_crop(ctx, image),
                   message=M("ui.image_to_read", why=_unread_why(rendering, image)))
        ev.manual_pending(M("ui.manual_image", count=len(reading.pending)))
        return
    skipped = rendering.get("skipped") or []
    for entry in skipped:
        ev.add(rule="VER-UI-13", severity=Severity.WARNING, location=rendering.get("final_url") or rendering.get("url") or "-",
               message=M("ui.entry_not_opened", entry=entry))
    if skipped:  # an about entry not opened may hold the version: absence is not proven
        ev.inconclusive(M("ui.not_all_opened", count=len(skipped)))
        return
    looked = "; ".join(v["url"] + (f" (via \"{v['via']}\")" if v.get("via") else "") for v in views)
    found = len(reading.hidden) + len(reading.elsewhere) + len(reading.components)
    ev.check(False, rule="VER-UI-01", location=final.get("url") or rendering.get("url"),
             artefact=_shot(ctx, rendering, 0), message=M("ui.not_seen", views=looked, found=found, hidden=len(reading.hidden),
                                                         elsewhere=len(reading.elsewhere), components=len(reading.components)))


def _crop(ctx: CheckContext, image: dict) -> str | None:
    name = image.get("crop")
    return ctx.artefact(name).sha256 if name and ctx.has(name) else None


def _unread_why(rendering: dict, image: dict) -> Localized:
    ocr = image.get("ocr")
    if not rendering.get("ocr") or ocr is None:
        return M("ocr.absent")
    if ocr.get("error"):
        return M("ocr.failed", error=ocr["error"])
    return M("ocr.unsure", text=ocr.get("version") or "-", confidence=ocr.get("confidence"),
             threshold=rendering.get("thresholds", {}).get("ocr_min_confidence", "-"))


def _legacy_visible(ctx: CheckContext, ev: Evaluation) -> None:
    """The check as bundles written before the browser were judged (raw HTML text)."""
    reachable, seen = _legacy_ui_seen(ctx)
    ex = _exchange(ctx, "ui.exchange") or {}
    if not reachable:
        ev.error(M("ui.unreachable", url=ex.get("url"), status=ex.get("status"), error=_failure(ex)))
        return
    ev.check(seen is not None, rule="VER-UI-01", location=ex["url"], message=M("ui.no_version"),
             artefact=ctx.artefact("ui.page").sha256)
    if seen is not None:
        ev.add(rule="VER-UI-02", location=seen.location, artefact=seen.artefact, message=M("ui.version_shown", version=seen.version))
    if ctx.has("ui.screenshot"):
        ev.add(rule="VER-UI-03", location="ui.screenshot", artefact=ctx.artefact("ui.screenshot").sha256,
               message=M("ui.screenshot"))
    else:
        ev.add(rule="VER-UI-03", location="ui.screenshot", severity=Severity.WARNING, message=M("ui.no_browser"))


@check(reads=UI + API, optional=LEGACY_UI)
def check_matches_declared(ctx: CheckContext, ev: Evaluation) -> None:
    declared = ctx.target.product["version"]
    seen = _current(ctx)
    if seen is None:
        ev.inconclusive(M("decl.nothing_observed"))
        return
    ev.check(seen.version == declared, rule="VER-DECL-01", location=seen.location, artefact=seen.artefact,
             message=M("decl.differs", shown=seen.version, declared=declared))


@check(reads=UI + API, optional=LEGACY_UI)
def check_orderable_scheme(ctx: CheckContext, ev: Evaluation) -> None:
    candidates = []
    _, ui = ui_seen(ctx)
    api = api_seen(ctx)[0]
    candidates += [s for s in (ui, api) if s]
    if not candidates:
        ev.inconclusive(M("scheme.only_declared"))
    candidates.append(Seen("declared", ctx.target.product["version"], "target:product.version", ""))
    for s in candidates:
        ev.check(version_key(s.version) is not None, rule="VER-SCHEME-01", location=s.location,
                 artefact=s.artefact or None, message=M("scheme.unorderable", version=s.version, channel=s.channel))


def _history(ctx: CheckContext) -> list[dict]:
    return ctx.json("history")["records"]


@check(reads=UI + API + ("history",), optional=LEGACY_UI)
def check_later_than_history(ctx: CheckContext, ev: Evaluation) -> None:
    seen = _current(ctx)
    fingerprint = api_seen(ctx)[1]
    if seen is None or version_key(seen.version) is None:
        ev.inconclusive(M("chrono.no_current"))
        return
    key = version_key(seen.version)
    for r in _history(ctx):
        if fingerprint and r["fingerprint"] == fingerprint:
            continue  # the same build evidenced again
        earlier = version_key(r["version"])
        if earlier is None or earlier == key:
            continue  # not orderable (VER-SCHEME) / same version for another build (VER-CODE)
        ev.check(key > earlier, rule="VER-CHRONO-01", location=f"{r['bundle']} (run {r['run_id']})",
                 artefact=seen.artefact, message=M("chrono.older", version=seen.version, earlier=r["version"], when=r["started_at"]))
    if ev.assertions == 0:
        ev.inconclusive(M("chrono.no_history"))


@check(reads=UI + API + ("history",), optional=LEGACY_UI)
def check_changes_with_build(ctx: CheckContext, ev: Evaluation) -> None:
    seen = _current(ctx)
    api, fingerprint, why = api_seen(ctx)
    if seen is None or fingerprint is None:
        ev.inconclusive(M("change.not_exposed_why", why=why) if why else M("change.not_exposed"))
        return
    for r in _history(ctx):
        if not r["fingerprint"]:
            continue
        where = f"{r['bundle']} (run {r['run_id']})"
        if r["fingerprint"] != fingerprint:
            ev.check(r["version"] != seen.version, rule="VER-CODE-01", location=where, artefact=seen.artefact,
                     message=M("change.frozen", before=r["fingerprint"], after=fingerprint, version=seen.version))
        else:
            ev.check(r["version"] == seen.version, rule="VER-CODE-02", location=where, artefact=seen.artefact,
                     severity=Severity.WARNING, message=M("change.two_versions", fingerprint=fingerprint, earlier=r["version"], version=seen.version))
    if ev.assertions == 0:
        ev.inconclusive(M("change.no_history"))


CDA_NS = {"cda": "urn:hl7-org:v3"}
_DEVICE = "cda:author/cda:assignedAuthor/cda:assignedAuthoringDevice"


def documents_seen(ctx: CheckContext, ev: Evaluation | None = None) -> list[Seen]:
    """The version each document the software produced names for the software that wrote it:
    its authoring device's ``softwareName``, else its ``manufacturerModelName`` (CI-SIS asks
    for the software and its version there). A document naming none is said (VER-CHAN-03)."""
    out = []
    for group in DOCS:
        for item, art in sorted(ctx.items(group).items()):
            name = f"{group}/{item}"
            try:
                root = ctx.xml(name).getroot()
            except UnsafeInput:
                continue  # not a readable XML document: the CDA scenarios say so
            if etree.QName(root).localname != "ClinicalDocument":
                continue
            devices = root.findall(_DEVICE, CDA_NS)
            for n, device in enumerate(devices, 1):
                found = None
                for field in ("softwareName", "manufacturerModelName"):
                    el = device.find(f"cda:{field}", CDA_NS)
                    version = number_of(el.text or "") if el is not None else None
                    if version:
                        found = Seen("document", version, f"{name} /ClinicalDocument/author[{n}]/assignedAuthor/assignedAuthoringDevice/{field}",
                                     art.sha256)
                        break
                if found:
                    out.append(found)
                elif ev is not None:
                    ev.add(rule="VER-CHAN-03", severity=Severity.WARNING, artefact=art.sha256,
                           location=f"{name} /ClinicalDocument/author[{n}]/assignedAuthor/assignedAuthoringDevice",
                           message=M("channels.document_no_version"))
    return out


def _ui_warning(ctx: CheckContext, ev: Evaluation, ui: Seen | None) -> None:
    if ctx.has("ui.rendering") and ui is None:
        rendering = ctx.json("ui.rendering")
        why = M("channels.ui_no_browser") if rendering.get("error") == "no-browser" else M("channels.ui_not_seen")
        ev.add(rule="VER-CHAN-04", location="ui", severity=Severity.WARNING, message=why)


def _compare(ev: Evaluation, first: Seen, others: list[Seen]) -> None:
    for other in others:
        ev.check(compatible(other.version, first.version), rule="VER-CHAN-01", location=other.location,
                 artefact=other.artefact, message=M("channels.differs", version=other.version, channel=other.channel, first=first.version,
                                                    first_channel=first.channel, where=first.location))


@check(reads=UI + API, optional=LEGACY_UI)
def check_same_in_channels(ctx: CheckContext, ev: Evaluation) -> None:
    """The user interface (as a person sees it) and the API."""
    _, ui = ui_seen(ctx)
    _ui_warning(ctx, ev, ui)
    api, _, why = api_seen(ctx)
    if why:
        ev.add(rule="VER-CHAN-02", location="api", severity=Severity.WARNING,
               message=M("channels.api_unreadable", why=why))
    seen = [s for s in (ui, api) if s]
    if len(seen) < 2:
        what = M("channels.seen_one", channel=seen[0].channel, where=seen[0].location) if seen else \
            M("channels.seen_none")
        ev.inconclusive(M("channels.too_few", seen=what))
        return
    _compare(ev, seen[0], seen[1:])


@check(reads=UI + API + DOCS)
def check_same_in_documents(ctx: CheckContext, ev: Evaluation) -> None:
    """The documents the software produced, against the UI as a person sees it, else the API."""
    _, ui = ui_seen(ctx)
    _ui_warning(ctx, ev, ui)
    reference = ui or api_seen(ctx)[0]
    documents = documents_seen(ctx, ev)
    if not documents:
        api = api_seen(ctx)[0]
        if ui is not None and api is not None and compatible(ui.version, api.version):
            # the requirement is not proven for the documents, but what was compared agreed: said
            ev.inconclusive(M("channels.no_document_agree", ui=ui.location, api=api.location))
        else:
            ev.inconclusive(M("channels.no_document"))
        return
    if reference is None:
        ev.inconclusive(M("channels.no_reference"))
        return
    _compare(ev, reference, documents)
