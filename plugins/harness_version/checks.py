"""Checks of the label's version-number rules: pure functions of the recorded inputs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness import CheckContext, Evaluation, Localized, Severity, Text, UnsafeInput, catalogue, check

from .extract import dig, read_page, ui_version, version_key

M = catalogue(__name__)
UI = ("ui.exchange", "ui.page", "ui.about.exchange", "ui.about", "ui.screenshot")
API = ("api.exchange", "api.about")

REQ_UI = "LES-3.1-UI"
REQ_DECL = "LES-3.1-DECL"
REQ_SCHEME = "LES-3.1-SCHEME"
REQ_CHRONO = "LES-3.1-CHRONO"
REQ_CHANGE = "LES-3.1-CHANGE"
REQ_CHANNELS = "LES-3.1-CHANNELS"


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


def ui_seen(ctx: CheckContext) -> tuple[bool, Seen | None]:
    """(UI reachable, the version it shows) — landing page about areas, then About page."""
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


@check(reads=UI)
def check_visible_in_ui(ctx: CheckContext, ev: Evaluation) -> None:
    reachable, seen = ui_seen(ctx)
    ex = _exchange(ctx, "ui.exchange") or {}
    if not reachable:
        ev.error(M("ui.unreachable", url=ex.get("url"), status=ex.get("status"), error=_failure(ex)))
        return
    ev.check(seen is not None, rule="VER-UI-01", requirement=REQ_UI, location=ex["url"], message=M("ui.no_version"),
             artefact=ctx.artefact("ui.page").sha256)
    if seen is not None:
        ev.add(rule="VER-UI-02", requirement=REQ_UI, location=seen.location, artefact=seen.artefact, message=M("ui.version_shown", version=seen.version))
    if ctx.has("ui.screenshot"):
        ev.add(rule="VER-UI-03", requirement=REQ_UI, location="ui.screenshot", artefact=ctx.artefact("ui.screenshot").sha256,
               message=M("ui.screenshot"))
    else:
        ev.add(rule="VER-UI-03", requirement=REQ_UI, location="ui.screenshot", severity=Severity.WARNING, message=M("ui.no_browser"))


@check(reads=UI + API)
def check_matches_declared(ctx: CheckContext, ev: Evaluation) -> None:
    declared = ctx.target.product["version"]
    seen = _current(ctx)
    if seen is None:
        ev.inconclusive(M("decl.nothing_observed"))
        return
    ev.check(seen.version == declared, rule="VER-DECL-01", requirement=REQ_DECL, location=seen.location, artefact=seen.artefact,
             message=M("decl.differs", shown=seen.version, declared=declared))


@check(reads=UI + API)
def check_orderable_scheme(ctx: CheckContext, ev: Evaluation) -> None:
    candidates = []
    _, ui = ui_seen(ctx)
    api = api_seen(ctx)[0]
    candidates += [s for s in (ui, api) if s]
    if not candidates:
        ev.inconclusive(M("scheme.only_declared"))
    candidates.append(Seen("declared", ctx.target.product["version"], "target:product.version", ""))
    for s in candidates:
        ev.check(version_key(s.version) is not None, rule="VER-SCHEME-01", requirement=REQ_SCHEME, location=s.location,
                 artefact=s.artefact or None, message=M("scheme.unorderable", version=s.version, channel=s.channel))


def _history(ctx: CheckContext) -> list[dict]:
    return ctx.json("history")["records"]


@check(reads=UI + API + ("history",))
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
        ev.check(key > earlier, rule="VER-CHRONO-01", requirement=REQ_CHRONO, location=f"{r['bundle']} (run {r['run_id']})",
                 artefact=seen.artefact, message=M("chrono.older", version=seen.version, earlier=r["version"], when=r["started_at"]))
    if ev.assertions == 0:
        ev.inconclusive(M("chrono.no_history"))


@check(reads=UI + API + ("history",))
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
            ev.check(r["version"] != seen.version, rule="VER-CODE-01", requirement=REQ_CHANGE, location=where, artefact=seen.artefact,
                     message=M("change.frozen", before=r["fingerprint"], after=fingerprint, version=seen.version))
        else:
            ev.check(r["version"] == seen.version, rule="VER-CODE-02", requirement=REQ_CHANGE, location=where, artefact=seen.artefact,
                     severity=Severity.WARNING, message=M("change.two_versions", fingerprint=fingerprint, earlier=r["version"], version=seen.version))
    if ev.assertions == 0:
        ev.inconclusive(M("change.no_history"))


@check(reads=UI + API)
def check_same_in_channels(ctx: CheckContext, ev: Evaluation) -> None:
    _, ui = ui_seen(ctx)
    api, _, why = api_seen(ctx)
    seen = [s for s in (ui, api) if s]
    if why:
        ev.add(rule="VER-CHAN-02", requirement=REQ_CHANNELS, location="api", severity=Severity.WARNING,
               message=M("channels.api_unreadable", why=why))
    if len(seen) < 2:
        ev.inconclusive(M("channels.too_few"))
        return
    first = seen[0]
    for other in seen[1:]:
        ev.check(other.version == first.version, rule="VER-CHAN-01", requirement=REQ_CHANNELS, location=other.location,
                 artefact=other.artefact, message=M("channels.differs", version=other.version, channel=other.channel, first=first.version,
                                                    first_channel=first.channel, where=first.location))
