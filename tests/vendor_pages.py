"""A corpus of realistic vendor pages, each modelled on how real practice-management products
show (or fail to show) their version: footers, headers, about pages and dialogs, menus, web
components, frames, single-page routes. For each: the pattern it stands for, what a person sees,
and the verdict a person would give on "the version is reachable simply in the user interface"
(label convention, art. 3.1), with the version they would read.

Served from memory on loopback by :func:`serve` (a route answers late on purpose: a version
filled in after the load event). The product is "OrdoCabinet", declared version 5.4.2.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PRODUCT = "OrdoCabinet"
DECLARED = "5.4.2"

STYLE = """<style>
body{font-family:Arial,Helvetica,sans-serif;margin:0;color:#222;background:#fff}
header{background:#1d4e89;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:center}
header a,header button{color:#fff;background:none;border:0;font-size:14px;cursor:pointer}
nav.side{position:fixed;left:0;top:52px;width:180px;bottom:0;background:#f2f4f7;padding:10px}
main{margin-left:200px;padding:20px;min-height:500px}
footer{border-top:1px solid #ccc;padding:8px 20px;margin-left:200px;font-size:12px;color:#555;background:#fafafa}
dialog{border:1px solid #888;padding:20px;font-size:14px}
table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}
.menu{position:absolute;top:44px;right:20px;background:#fff;border:1px solid #ccc;display:none}
.menu.open{display:block} .menu button{display:block;color:#222;padding:6px 12px;width:100%;text-align:left}
</style>"""

MAIN = """<h1>Agenda du jour</h1><p>Dr Claire Martin — Cabinet médical des Tilleuls</p>
<table><tr><th>Heure</th><th>Patient</th><th>Motif</th></tr>
<tr><td>08:30</td><td>DUPONT Jean</td><td>Renouvellement</td></tr>
<tr><td>09:00</td><td>PAT-TROIS Dominique</td><td>Consultation</td></tr></table>"""
NAV = """<nav class="side"><a href="#">Agenda</a><br><a href="#">Patients</a><br><a href="#">Ordonnances</a><br><a href="#">Messagerie</a></nav>"""


def page(*, header: str = "", footer: str = "", main: str = MAIN, body_end: str = "", head: str = "", title: str = "OrdoCabinet") -> str:
    return (f"<!doctype html><html lang=fr><head><meta charset=utf-8><title>{title}</title>{STYLE}{head}</head><body>"
            f"<header><b>{PRODUCT}</b>{header}</header>{NAV}<main>{main}</main>"
            + (f"<footer>{footer}</footer>" if footer else "") + f"{body_end}</body></html>")


ABOUT_DIALOG = """<dialog id=about><h2>À propos</h2><p>{body}</p><button onclick="this.closest('dialog').close()">Fermer</button></dialog>"""
OPEN_ABOUT = "document.getElementById('about').showModal()"


@dataclass
class Case:
    pattern: str  # what real products do, that this page stands for
    sees: str  # what a person sees
    verdict: str  # PASS, FAIL, MANUAL_PENDING: what a person would conclude
    version: str | None  # the version they would read (None: none)
    files: dict[str, str] = field(default_factory=dict)  # path -> HTML; "/" is the page given to the harness
    rules: tuple[str, ...] = ()  # rules a finding must name (a FAIL's, or an informative one)


def _about_page(body: str) -> str:
    return page(main=f"<h1>À propos de {PRODUCT}</h1>{body}", title="À propos")


COMPONENTS = f"""<p>{PRODUCT} version 5.4.2</p><ul><li>Connecteur DMP v1.8.3</li><li>Module INSi v2.0.1</li>
<li>Moteur de règles CDA v3.1.0</li><li>Client MSSanté v4.2</li></ul><p>© 2026 Éditeur Exemple SAS</p>"""

CASES: dict[str, Case] = {
    # -- a version in the footer or header, written the ways vendors write it ------------------
    "footer-plain": Case("footer 'Version X'", "Version 5.4.2 in the footer", "PASS", "5.4.2",
                         {"/": page(footer="© 2026 Éditeur Exemple SAS — Version 5.4.2")}),
    "footer-build-paren": Case("version with its build id in brackets (the commonest footer)", "Version 5.4.2 (build 2026.11.3)", "PASS", "5.4.2",
                               {"/": page(footer="OrdoCabinet · Version 5.4.2 (build 2026.11.3)")}),
    "footer-build-dash": Case("v-prefixed version, build after a dash", "v5.4.2 – build 4711", "PASS", "5.4.2",
                              {"/": page(footer="OrdoCabinet v5.4.2 – build 4711")}),
    "footer-build-plus": Case("semantic version with build metadata", "Version 5.4.2+20261103.1", "PASS", "5.4.2+20261103.1",
                              {"/": page(footer="Version 5.4.2+20261103.1")}),
    "footer-prerelease": Case("pre-release on a demo server", "Version 5.4.2-rc.1", "PASS", "5.4.2-rc.1",
                              {"/": page(footer="Version 5.4.2-rc.1 — serveur de démonstration")}),
    "footer-date-suffix": Case("version followed by its release date", "Version 5.4.2 du 03/11/2026", "PASS", "5.4.2",
                               {"/": page(footer="Version 5.4.2 du 03/11/2026")}),
    "footer-build-hash": Case("build as a commit hash", "Version 5.4.2 (build a1b2c3d)", "PASS", "5.4.2",
                              {"/": page(footer="Version 5.4.2 (build a1b2c3d)")}),
    "footer-revision": Case("French 'révision' after the version", "OrdoCabinet version 5.4.2 (révision 8812)", "PASS", "5.4.2",
                            {"/": page(footer="OrdoCabinet version 5.4.2 (révision 8812)")}),
    "footer-build-words": Case("build written as words after the version", "Version 5.4.2 build n° 88", "PASS", "5.4.2",
                               {"/": page(footer="Version 5.4.2 build n° 88")}),
    "product-bare-number": Case("product name followed by a bare number", "OrdoCabinet 5.4.2 in the footer", "PASS", "5.4.2",
                                {"/": page(footer="OrdoCabinet 5.4.2")}),
    "product-number-header": Case("name and number in the header bar", "OrdoCabinet 5.4.2 — Cabinet des Tilleuls", "PASS", "5.4.2",
                                  {"/": page(header="<span>OrdoCabinet 5.4.2 — Cabinet des Tilleuls</span>")}),
    "product-number-split": Case("name in bold, number in the next element", "OrdoCabinet 5.4.2 (two elements)", "PASS", "5.4.2",
                                 {"/": page(footer="<b>OrdoCabinet</b> <span>5.4.2</span>")}),
    "header-v-prefix": Case("v-prefixed version in the header", "v5.4.2 in the header", "PASS", "5.4.2",
                            {"/": page(header="<small>v5.4.2</small>")}),
    "copyright-and-version": Case("copyright, product and version in one line", "© 2026 OrdoCabinet — Version 5.4.2", "PASS", "5.4.2",
                                  {"/": page(footer="© 2026 OrdoCabinet — Version 5.4.2 — Mentions légales")}),
    "label-du-logiciel": Case("'Version du logiciel :' label", "Version du logiciel : 5.4.2", "PASS", "5.4.2",
                              {"/": page(footer="Version du logiciel : 5.4.2")}),
    "label-numero": Case("'Numéro de version' label", "Numéro de version : 5.4.2", "PASS", "5.4.2",
                         {"/": page(footer="Numéro de version : 5.4.2")}),
    "definition-list": Case("label and value in two elements", "Version / 5.4.2 in a definition list", "PASS", "5.4.2",
                            {"/": page(footer="<dl style='margin:0'><dt>Version</dt><dd>5.4.2</dd></dl>")}),
    "standards-beside": Case("footer naming the standards it follows", "OrdoCabinet 5.4.2 · Conforme CI-SIS 2023.01 · HL7 v2.5", "PASS", "5.4.2",
                             {"/": page(footer="OrdoCabinet 5.4.2 · Conforme CI-SIS 2023.01 · HL7 v2.5")}),
    "api-version-beside": Case("an API version beside the product's", "Version 5.4.2 · API v2", "PASS", "5.4.2",
                               {"/": page(footer="Version 5.4.2 · API v2")}),
    "sidebar-version": Case("version at the bottom of the side navigation", "v5.4.2 under the menu", "PASS", "5.4.2",
                            {"/": page(main=MAIN).replace("<a href=\"#\">Messagerie</a>", "<a href=\"#\">Messagerie</a><p style='font-size:12px'>v5.4.2</p>")}),
    "long-page-footer": Case("footer at the bottom of a long page", "Version 5.4.2 after scrolling", "PASS", "5.4.2",
                             {"/": page(main=MAIN + "<div style='height:3500px'></div>", footer="Version 5.4.2")}),
    "login-page": Case("login page with the version under the form", "Version 5.4.2 under the login form", "PASS", "5.4.2",
                       {"/": page(main="<h1>Connexion</h1><form><input placeholder=Identifiant><input type=password></form>",
                                  footer="Version 5.4.2", title="Connexion")}),
    # -- where the browser must look ------------------------------------------------------------
    "shadow-footer": Case("footer as a web component (open shadow root)", "Version 5.4.2 in the footer", "PASS", "5.4.2",
                          {"/": page(body_end="<app-footer></app-footer><script>customElements.define('app-footer', class extends HTMLElement{"
                                              "connectedCallback(){this.attachShadow({mode:'open'}).innerHTML="
                                              "'<footer style=\"font-size:12px;padding:8px 20px\">OrdoCabinet — Version 5.4.2</footer>'}})</script>")}),
    "frame-footer": Case("footer in a same-origin frame", "Version 5.4.2 in the footer frame", "PASS", "5.4.2",
                         {"/": page(body_end="<iframe src='/footer.html' title='pied de page' style='width:100%;height:40px;border:0'></iframe>"),
                          "/footer.html": "<!doctype html><html><body style='margin:0;font:12px Arial;color:#444'>"
                                          "<footer>OrdoCabinet — Version 5.4.2</footer></body></html>"}),
    "late-fetch": Case("version filled in by a request answered after the load", "Version 5.4.2 in the footer, a moment later", "PASS", "5.4.2",
                       {"/": page(footer="Version <span id=v>…</span>",
                                  body_end="<script>fetch('/slow/version.json').then(r=>r.json()).then(j=>{document.getElementById('v').textContent=j.version})</script>"),
                        "/slow/version.json": '{"version": "5.4.2"}'}),
    # -- one or two clicks away ------------------------------------------------------------------
    "about-link-page": Case("footer link to an about page", "Version 5.4.2 on the about page", "PASS", "5.4.2",
                            {"/": page(footer="<a href='/a-propos.html'>À propos</a> · Mentions légales"),
                             "/a-propos.html": _about_page("<p>Version 5.4.2</p>")}),
    "about-icon-aria": Case("info icon button named by aria-label", "Version 5.4.2 in the about dialog", "PASS", "5.4.2",
                            {"/": page(header=f"<button aria-label='À propos' onclick=\"{OPEN_ABOUT}\">&#9432;</button>",
                                       body_end=ABOUT_DIALOG.format(body=f"{PRODUCT} — Version 5.4.2"))}),
    "about-icon-title": Case("icon link named by its title", "Version 5.4.2 on the about page", "PASS", "5.4.2",
                             {"/": page(header="<a href='/info.html' title='À propos de OrdoCabinet'><svg width=16 height=16><circle cx=8 cy=8 r=7 fill=white /></svg></a>"),
                              "/info.html": _about_page("<p>Version 5.4.2</p>")}),
    "about-hash-route": Case("single-page application, about by a hash route", "Version 5.4.2 on the #/a-propos view", "PASS", "5.4.2",
                             {"/": page(header="<a href='#/a-propos'>À propos</a>", main="<div id=view></div>",
                                        body_end="<script>const r=()=>{document.getElementById('view').innerHTML=location.hash==='#/a-propos'?"
                                                 "'<section class=about><h1>À propos</h1><p>Version 5.4.2</p></section>':'" + MAIN.replace("\n", " ").replace("'", "\\'") + "'};"
                                                 "addEventListener('hashchange',r);r()</script>")}),
    "about-new-tab": Case("about page opened in a new tab", "Version 5.4.2 in the new tab", "PASS", "5.4.2",
                          {"/": page(footer="<a href='/a-propos.html' target='_blank'>À propos</a>"),
                           "/a-propos.html": _about_page("<p>Version 5.4.2</p>")}),
    "about-popup": Case("about window opened by script (window.open)", "Version 5.4.2 in the pop-up", "PASS", "5.4.2",
                        {"/": page(header="<button onclick=\"window.open('/popup.html','about','width=400,height=300')\">À propos</button>"),
                         "/popup.html": _about_page("<p>Version 5.4.2</p>")}),
    "about-popup-after-fetch": Case("about window opened once the server answered (fetch, then window.open)", "Version 5.4.2 in the pop-up",
                                    "PASS", "5.4.2",
                                    {"/": page(header="<button onclick=\"fetch('/slow/about.json').then(r => r.json())"
                                                      ".then(a => window.open(a.page, 'about', 'width=400,height=300'))\">À propos</button>"),
                                     "/slow/about.json": '{"page": "/popup.html"}', "/popup.html": _about_page("<p>Version 5.4.2</p>")}),
    "about-dialog-fetched": Case("about dialog filled once the server answered (fetch on click)", "Version 5.4.2 in the about dialog",
                                 "PASS", "5.4.2",
                                 {"/": page(header="<button onclick=\"fetch('/slow/about.json').then(r => r.json()).then(a => {"
                                                   "document.querySelector('#about p').textContent = 'Version ' + a.version; "
                                                   f"{OPEN_ABOUT}; }})\">À propos</button>",
                                            body_end=ABOUT_DIALOG.format(body="")),
                                  "/slow/about.json": '{"version": "5.4.2"}'}),
    "menu-two-step": Case("help menu holding the about entry (Aide › À propos)", "Version 5.4.2 in the about dialog", "PASS", "5.4.2",
                          {"/": page(header="<button onclick=\"document.querySelector('.menu').classList.toggle('open')\">Aide</button>"
                                            f"<div class=menu><button>Manuel</button><button onclick=\"{OPEN_ABOUT}\">À propos de {PRODUCT}</button></div>",
                                     body_end=ABOUT_DIALOG.format(body="Version 5.4.2"))}),
    "menu-two-step-en": Case("English help menu (Help › About)", "Version 5.4.2 in the about dialog", "PASS", "5.4.2",
                             {"/": page(header="<button onclick=\"document.querySelector('.menu').classList.toggle('open')\">Help</button>"
                                               f"<div class=menu><button onclick=\"{OPEN_ABOUT}\">About</button></div>",
                                        body_end=ABOUT_DIALOG.format(body="Version 5.4.2"))}),
    "about-details": Case("collapsible 'À propos' section", "Version 5.4.2 once opened", "PASS", "5.4.2",
                          {"/": page(footer="<details><summary>À propos</summary>Version 5.4.2</details>")}),
    "about-table": Case("about page with a label/value table", "Version du logiciel | 5.4.2", "PASS", "5.4.2",
                        {"/": page(footer="<a href='/a-propos.html'>À propos</a>"),
                         "/a-propos.html": _about_page("<table><tr><th>Version du logiciel</th><td>5.4.2</td></tr>"
                                                       "<tr><th>Éditeur</th><td>Éditeur Exemple SAS</td></tr></table>")}),
    "about-components": Case("about page listing the components' versions", "OrdoCabinet version 5.4.2, then its modules", "PASS", "5.4.2",
                             {"/": page(footer="<a href='/a-propos.html'>À propos</a>"), "/a-propos.html": _about_page(COMPONENTS)}),
    "about-components-dashes": Case("components listed with dashes", "OrdoCabinet — version 5.4.2 and its modules", "PASS", "5.4.2",
                                    {"/": page(footer="<a href='/a-propos.html'>À propos</a>"),
                                     "/a-propos.html": _about_page(f"<p>{PRODUCT} — version 5.4.2</p><p>Module INSi — version 2.0.1</p>"
                                                                   "<p>Connecteur DMP — version 1.8.3</p>")}),
    # -- what a person would refuse -------------------------------------------------------------
    "stale-about": Case("header and about box disagree (a stale about box)", "5.4.2 in the header, 5.4.1 in the about box", "FAIL", "5.4.2",
                        {"/": page(header=f"<span>{PRODUCT} 5.4.2</span><button onclick=\"{OPEN_ABOUT}\">À propos</button>",
                                   body_end=ABOUT_DIALOG.format(body="Version 5.4.1"))}, rules=("VER-UI-04",)),
    "two-versions": Case("header and footer disagree", "v5.4.2 in the header, Version 5.3.0 in the footer", "FAIL", "5.4.2",
                         {"/": page(header="<small>v5.4.2</small>", footer="Version 5.3.0")}, rules=("VER-UI-04",)),
    "hidden-css": Case("version in the footer, display:none", "nothing", "FAIL", None,
                       {"/": page(footer="<span style='display:none'>Version 5.4.2</span>Mentions légales")}, rules=("VER-UI-01", "VER-UI-05")),
    "tiny-font": Case("version in a 6 px font", "an unreadable speck", "FAIL", None,
                      {"/": page(footer="<span style='font-size:6px'>Version 5.4.2</span>")}, rules=("VER-UI-01", "VER-UI-05")),
    "low-contrast": Case("version in light grey on white", "nothing readable", "FAIL", None,
                         {"/": page(footer="<span style='color:#f4f4f4'>Version 5.4.2</span>")}, rules=("VER-UI-01", "VER-UI-05")),
    "no-version": Case("no version anywhere", "nothing", "FAIL", None,
                       {"/": page(footer="© 2026 Éditeur Exemple SAS — Mentions légales")}, rules=("VER-UI-01",)),
    "unrelated-number-body": Case("only a standard's version, in the page body", "'Conforme HL7 v2.5' in the text", "FAIL", None,
                                  {"/": page(main=MAIN + "<p>Interface conforme HL7 v2.5</p>")}, rules=("VER-UI-01",)),
    "closed-dialog-only": Case("version only in an about dialog nothing opens", "nothing", "FAIL", None,
                               {"/": page(body_end=ABOUT_DIALOG.format(body="Version 5.4.2"))}, rules=("VER-UI-01", "VER-UI-05")),
    "offscreen": Case("version pushed off the page", "nothing", "FAIL", None,
                      {"/": page(footer="<span style='position:absolute;left:-9999px'>Version 5.4.2</span>")}, rules=("VER-UI-01", "VER-UI-05")),
    # -- a person must look ----------------------------------------------------------------------
    "image-number-no-label": Case("version drawn in an image, its label garbled", "an image reading 'WERSION 5.4.2'", "MANUAL_PENDING", None,
                                  {"/": page(footer="<img alt='' src='/logo.svg' width=360 height=56>"),
                                   "/logo.svg": "<svg xmlns='http://www.w3.org/2000/svg' width='360' height='56'><rect width='360' height='56' fill='white'/>"
                                                "<text x='8' y='40' font-family='DejaVu Sans, Arial' font-size='30' fill='black'>WERSION 5.4.2</text></svg>"}),
}


class _Handler(BaseHTTPRequestHandler):
    case: Case

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0].split("#")[0]
        body = self.case.files.get(path)
        if body is None:
            self.send_error(404)
            return
        if path.startswith("/slow/"):
            time.sleep(1.2)  # answered after the load event
        ctype = "image/svg+xml" if path.endswith(".svg") else "application/json" if path.endswith(".json") else "text/html; charset=utf-8"
        data = body.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(case: Case) -> tuple[ThreadingHTTPServer, str]:
    """The case's pages on a loopback port; returns the server (``shutdown()`` it) and its URL."""
    handler = type("CaseHandler", (_Handler,), {"case": case})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"
