"""Checks of the label's version-number rules: pure functions of the recorded inputs."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from harness import CheckContext, Evaluation, Severity

from .extract import dig, read_page, ui_version, version_key

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


def _api_fields(ctx: CheckContext) -> tuple[str, str]:
    conf = ctx.target.get("version", {})
    return conf.get("api_version_field", "version"), conf.get("api_fingerprint_field", "build.fingerprint")


def api_seen(ctx: CheckContext) -> tuple[Seen | None, str | None, str | None]:
    """(version the API reports, build fingerprint, why the API could not be read)."""
    ex = _exchange(ctx, "api.exchange")
    if ex is None:
        return None, None, None  # the target exposes no API channel
    if not _reachable(ex) or not ctx.has("api.about"):
        return None, None, f"{ex['url']}: HTTP {ex.get('status')} {ex.get('error') or ''}".strip()
    try:
        data: Any = json.loads(ctx.read("api.about"))
    except ValueError as exc:
        return None, None, f"{ex['url']}: JSON invalide / invalid JSON ({exc})"
    vfield, ffield = _api_fields(ctx)
    version, fingerprint = dig(data, vfield), dig(data, ffield)
    seen = Seen("api", version, f"{ex['url']} $.{vfield}", ctx.artefact("api.about").sha256) if isinstance(version, str) and version else None
    return seen, (fingerprint if isinstance(fingerprint, str) and fingerprint else None), None


def _current(ctx: CheckContext) -> Seen | None:
    _, ui = ui_seen(ctx)
    return ui or api_seen(ctx)[0]


def check_visible_in_ui(ctx: CheckContext, ev: Evaluation) -> None:
    reachable, seen = ui_seen(ctx)
    ex = _exchange(ctx, "ui.exchange") or {}
    if not reachable:
        ev.error(
            fr=f"Interface utilisateur injoignable : {ex.get('url')} (HTTP {ex.get('status')}, {ex.get('error')})",
            en=f"User interface unreachable: {ex.get('url')} (HTTP {ex.get('status')}, {ex.get('error')})",
        )
        return
    ev.check(
        seen is not None,
        rule="VER-UI-01", requirement=REQ_UI, location=ex["url"],
        fr="Aucun numéro de version visible dans l'interface (page d'accueil, zones « à propos », page « À propos » à un clic)",
        en="No version number visible in the user interface (landing page, about areas, About page one click away)",
        artefact=ctx.artefact("ui.page").sha256,
    )
    if seen is not None:
        ev.add(rule="VER-UI-02", requirement=REQ_UI, location=seen.location, artefact=seen.artefact,
               fr=f"Version affichée : {seen.version}", en=f"Version shown: {seen.version}")
    if ctx.has("ui.screenshot"):
        ev.add(rule="VER-UI-03", requirement=REQ_UI, location="ui.screenshot", artefact=ctx.artefact("ui.screenshot").sha256,
               fr="Capture d'écran de l'interface enregistrée comme preuve", en="Screenshot of the user interface recorded as evidence")
    else:
        ev.add(rule="VER-UI-03", requirement=REQ_UI, location="ui.screenshot", severity=Severity.WARNING,
               fr="Pas de navigateur sans tête disponible : preuve par texte extrait seulement, sans capture d'écran",
               en="No headless browser available: proof by extracted text only, no screenshot")


def check_matches_declared(ctx: CheckContext, ev: Evaluation) -> None:
    declared = ctx.target["product"]["version"]
    seen = _current(ctx)
    if seen is None:
        ev.inconclusive(fr="Aucune version observée à comparer à la version déclarée", en="No observed version to compare with the declared one")
        return
    ev.check(
        seen.version == declared,
        rule="VER-DECL-01", requirement=REQ_DECL, location=seen.location, artefact=seen.artefact,
        fr=f"Version affichée {seen.version!r} différente de la version déclarée {declared!r} (fichier cible, product.version)",
        en=f"Version shown {seen.version!r} differs from the declared version {declared!r} (target file, product.version)",
    )


def check_orderable_scheme(ctx: CheckContext, ev: Evaluation) -> None:
    candidates = []
    _, ui = ui_seen(ctx)
    api = api_seen(ctx)[0]
    candidates += [s for s in (ui, api) if s]
    if not candidates:
        ev.inconclusive(fr="Aucune version observée dans le logiciel : seule la version déclarée a été examinée",
                        en="No version observed in the software: only the declared version was examined")
    candidates.append(Seen("declared", ctx.target["product"]["version"], "target:product.version", ""))
    for s in candidates:
        ev.check(
            version_key(s.version) is not None,
            rule="VER-SCHEME-01", requirement=REQ_SCHEME, location=s.location, artefact=s.artefact or None,
            fr=f"Version {s.version!r} ({s.channel}) hors schéma ordonnable (nombres séparés par des points, ex. 3.2.1 ou 2024.03.1)",
            en=f"Version {s.version!r} ({s.channel}) follows no orderable scheme (dot-separated numbers, e.g. 3.2.1 or 2024.03.1)",
        )


def _history(ctx: CheckContext) -> list[dict]:
    return ctx.json("history")["records"]


def check_later_than_history(ctx: CheckContext, ev: Evaluation) -> None:
    seen = _current(ctx)
    fingerprint = api_seen(ctx)[1]
    if seen is None or version_key(seen.version) is None:
        ev.inconclusive(fr="Version courante absente ou non ordonnable : chronologie non évaluable",
                        en="Current version missing or not orderable: chronology cannot be evaluated")
        return
    key = version_key(seen.version)
    for r in _history(ctx):
        if fingerprint and r["fingerprint"] == fingerprint:
            continue  # the same build evidenced again
        earlier = version_key(r["version"])
        if earlier is None or earlier == key:
            continue  # not orderable (VER-SCHEME) / same version for another build (VER-CODE)
        ev.check(
            key > earlier,
            rule="VER-CHRONO-01", requirement=REQ_CHRONO, location=f"{r['bundle']} (run {r['run_id']})", artefact=seen.artefact,
            fr=f"Version {seen.version} antérieure à la version {r['version']} déjà attestée le {r['started_at']}",
            en=f"Version {seen.version} is older than version {r['version']} evidenced on {r['started_at']}",
        )
    if ev.assertions == 0:
        ev.inconclusive(fr="Aucune autre version de ce produit dans les dossiers de preuves antérieurs",
                        en="No other version of this product in earlier evidence bundles")


def check_changes_with_build(ctx: CheckContext, ev: Evaluation) -> None:
    seen = _current(ctx)
    api, fingerprint, why = api_seen(ctx)
    if seen is None or fingerprint is None:
        ev.inconclusive(fr=f"Empreinte de build ou version non exposée{': ' + why if why else ''}",
                        en=f"Build fingerprint or version not exposed{': ' + why if why else ''}")
        return
    for r in _history(ctx):
        if not r["fingerprint"]:
            continue
        where = f"{r['bundle']} (run {r['run_id']})"
        if r["fingerprint"] != fingerprint:
            ev.check(
                r["version"] != seen.version,
                rule="VER-CODE-01", requirement=REQ_CHANGE, location=where, artefact=seen.artefact,
                fr=f"Le code a changé (empreinte {r['fingerprint']} → {fingerprint}) mais la version est restée {seen.version}",
                en=f"The code changed (fingerprint {r['fingerprint']} → {fingerprint}) but the version stayed {seen.version}",
            )
        else:
            ev.check(
                r["version"] == seen.version,
                rule="VER-CODE-02", requirement=REQ_CHANGE, location=where, artefact=seen.artefact, severity=Severity.WARNING,
                fr=f"Même build ({fingerprint}) présenté sous deux versions : {r['version']} puis {seen.version}",
                en=f"Same build ({fingerprint}) presented under two versions: {r['version']} then {seen.version}",
            )
    if ev.assertions == 0:
        ev.inconclusive(fr="Aucun build antérieur de ce produit avec empreinte dans les dossiers de preuves",
                        en="No earlier build of this product with a fingerprint in the evidence bundles")


def check_same_in_channels(ctx: CheckContext, ev: Evaluation) -> None:
    _, ui = ui_seen(ctx)
    api, _, why = api_seen(ctx)
    seen = [s for s in (ui, api) if s]
    if why:
        ev.add(rule="VER-CHAN-02", requirement=REQ_CHANNELS, location="api", severity=Severity.WARNING,
               fr=f"Canal API déclaré mais illisible : {why}", en=f"API channel declared but unreadable: {why}")
    if len(seen) < 2:
        ev.inconclusive(fr="Moins de deux canaux exposent une version : comparaison impossible",
                        en="Fewer than two channels expose a version: nothing to compare")
        return
    first = seen[0]
    for other in seen[1:]:
        ev.check(
            other.version == first.version,
            rule="VER-CHAN-01", requirement=REQ_CHANNELS, location=other.location, artefact=other.artefact,
            fr=f"Version {other.version!r} ({other.channel}) différente de {first.version!r} ({first.channel}, {first.location})",
            en=f"Version {other.version!r} ({other.channel}) differs from {first.version!r} ({first.channel}, {first.location})",
        )
