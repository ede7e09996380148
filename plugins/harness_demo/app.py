"""The demo vendor application: an HTML user interface and a JSON API, on loopback.

It behaves like a conformant vendor system unless started with named defects, each of
which breaks exactly one behaviour a scenario checks.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import ConnectionBounds, HarnessError, HttpService, Message, Request, Response, catalogue

from . import patients
from .dmp_defects import DMP_DEFECTS
from .mssante_defects import MSSANTE_DEFECTS
from .insi_client import INSI_DEFECTS
from .psc_defects import PSC_DEFECTS
from .pdsm_defects import PDSM_DEFECTS
from .smt_client import SMT_DEFECTS
from .label_files import LABEL_DEFECTS, export_zip, transcoding_csv
from .patients import CDA_DEFECTS, INS_DEFECTS, TERMINOLOGY_DEFECTS

M = catalogue(__name__)
PRODUCT_NAME = "Cabinet Démo"
VENDOR = "Éditeur Exemple SAS"
RELEASE = "3.2.1"
# The version the demo product was last labelled with: the embedded history bundle
# (history/*.zip) evidences this release.
LAST_LABELLED = "3.1.0"

DEFECTS: dict[str, Message] = {
    "version-hidden": M("defect.version-hidden"),
    "version-undeclared": M("defect.version-undeclared"),
    "version-unorderable": M("defect.version-unorderable"),
    "version-regression": M("defect.version-regression"),
    "version-frozen": M("defect.version-frozen"),
    "version-channel-mismatch": M("defect.version-channel-mismatch"),
    # what a person sees of the version (issue 15): each stages one situation of the UI
    "version-css-hidden": M("defect.version-css-hidden"),
    "version-same-colour": M("defect.version-same-colour"),
    "version-font-zero": M("defect.version-font-zero"),
    "version-off-screen": M("defect.version-off-screen"),
    "version-closed-dialog": M("defect.version-closed-dialog"),
    "version-by-script": M("defect.version-by-script"),
    "version-in-image": M("defect.version-in-image"),
    "version-v-prefix": M("defect.version-v-prefix"),
    "version-label-words": M("defect.version-label-words"),
    "version-unrelated-only": M("defect.version-unrelated-only"),
    "version-two-versions": M("defect.version-two-versions"),
    "version-login-redirect": M("defect.version-login-redirect"),
    "version-about-dialog": M("defect.version-about-dialog"),
    "version-document-differs": M("defect.version-document-differs"),
}

DEFECTS.update(INS_DEFECTS)
DEFECTS.update(TERMINOLOGY_DEFECTS)
DEFECTS.update(CDA_DEFECTS)
DEFECTS.update(DMP_DEFECTS)
DEFECTS.update(MSSANTE_DEFECTS)
DEFECTS.update(PSC_DEFECTS)
DEFECTS.update(INSI_DEFECTS)
DEFECTS.update(PDSM_DEFECTS)
DEFECTS.update(SMT_DEFECTS)
DEFECTS.update(LABEL_DEFECTS)

_SOURCE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


class UnknownDefect(ValueError):
    def __init__(self, unknown: list[str]) -> None:
        self.unknown = unknown
        self.known = sorted(DEFECTS)
        super().__init__(f"unknown defect(s): {', '.join(unknown)}; known: {', '.join(self.known)}")


# How the about API names its fields: "flat" ({"version", "build": {"fingerprint"}}) or
# "software" ({"software": {"release", "build_id"}}), for products whose API uses its own names
API_LAYOUTS = ("flat", "software")


@dataclass
class DemoConfig:
    release: str = RELEASE
    defects: list[str] = field(default_factory=list)
    token: str | None = None
    build: str = ""  # another build of the same release (the code changed, the version did not have to)
    api_layout: str = "flat"
    psc_idle: float = 900.0  # seconds without activity that end a session (e-ID referential: closed after inactivity)
    local_user: str = "dr-demo"  # the demo's own login (a password, then a TOTP code)
    local_secrets: Any = None  # () -> (password, TOTP secret), read when that login is first used

    def __post_init__(self) -> None:
        unknown = sorted(set(self.defects) - set(DEFECTS))
        if unknown:
            raise UnknownDefect(unknown)
        if self.api_layout not in API_LAYOUTS:
            raise ValueError(self.api_layout)
        self.defects = sorted(set(self.defects))

    def has(self, defect: str) -> bool:
        return defect in self.defects

    @property
    def shown_version(self) -> str:
        if self.has("version-undeclared"):
            return "3.3.0"
        if self.has("version-unorderable"):
            return "printemps-2024"
        if self.has("version-regression"):
            return "3.0.4"
        if self.has("version-frozen"):
            return LAST_LABELLED
        return self.release

    @property
    def api_version(self) -> str:
        return "3.2.0" if self.has("version-channel-mismatch") else self.shown_version

    @property
    def document_version(self) -> str:
        """The version the documents it produces name (CDA softwareName)."""
        return LAST_LABELLED if self.has("version-document-differs") else self.api_version

    @property
    def fingerprint(self) -> str:
        """The build fingerprint: what the code is, not what it claims to be."""
        material = json.dumps({"source": _SOURCE_DIGEST, "release": self.release, "defects": self.defects,
                               **({"build": self.build} if self.build else {})}, sort_keys=True)
        return "sha256:" + hashlib.sha256(material.encode()).hexdigest()[:32]


def _page(title: str, body: str, style: str = "") -> str:
    return f"""<!DOCTYPE html>
<html lang="fr">
<head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;background:#fff}} footer{{margin-top:3em;color:#555;border-top:1px solid #ccc}}{style}</style>
</head>
<body>
{body}
</body>
</html>
"""


# How each situation of the UI shows the version: (page style, footer version, about page
# version). The stylesheet hides, the script writes, the image draws: none of it is visible in
# the raw HTML the way it is on screen.
_STYLED = {
    "version-css-hidden": ".v{display:none}",
    "version-same-colour": ".v{color:#fff}",
    "version-font-zero": ".v{font-size:0}",
    "version-off-screen": ".v{position:absolute;left:-9999px}",
}


def version_svg(cfg: DemoConfig) -> str:
    """The version drawn as an image (no text of the page holds it)."""
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="150" height="22" viewBox="0 0 150 22">
<rect width="150" height="22" fill="#ffffff"/><text x="2" y="16" font-family="DejaVu Sans, sans-serif" font-size="14" fill="#222222">Version {html.escape(cfg.shown_version)}</text></svg>"""


def _shown(cfg: DemoConfig) -> tuple[str, str, str]:
    v = html.escape(cfg.shown_version)
    if cfg.has("version-hidden") or cfg.has("version-unrelated-only") or cfg.has("version-about-dialog"):
        return "", "", ""
    for defect, style in _STYLED.items():
        if cfg.has(defect):
            return style, f' <span class="v">— version {v}</span>', f'<dt class="v">Version</dt><dd class="v">{v}</dd>'
    if cfg.has("version-closed-dialog"):
        dialog = f'<dialog id="version-info"><p>{html.escape(PRODUCT_NAME)} — version {v}</p></dialog>'
        return "", dialog, dialog
    if cfg.has("version-by-script"):
        # written by the page's script: the raw HTML holds only its base64 form
        code = base64.b64encode(f" — version {cfg.shown_version}".encode()).decode()
        script = (f'<span id="v"></span><script>document.getElementById("v").textContent = '
                  f'new TextDecoder().decode(Uint8Array.from(atob("{code}"), c => c.charCodeAt(0)));</script>')
        return "", script, f"<dt>Version</dt><dd>{script}</dd>"
    if cfg.has("version-in-image"):
        image = '<img src="/version.svg" alt="" width="150" height="22">'
        return "", f" {image}", f"<dt>Version</dt><dd>{image}</dd>"
    if cfg.has("version-v-prefix"):
        return "", f" v{v}", f"<dt>Version</dt><dd>{html.escape(PRODUCT_NAME)} v{v}</dd>"
    if cfg.has("version-label-words"):
        return "", f" — Version du logiciel : {v}", f"<dt>Informations</dt><dd>Version du logiciel : {v}</dd>"
    return "", f" — version {v}", f"<dt>Version</dt><dd>{v}</dd>"


def render_home(cfg: DemoConfig) -> str:
    style, footer, _ = _shown(cfg)
    title = html.escape(PRODUCT_NAME) + (" v3.3.0" if cfg.has("version-two-versions") else "")
    about = '<a href="/about">À propos</a>'
    extra = ""
    if cfg.has("version-about-dialog"):  # one click away: a button opens the about dialog
        about = '<button type="button" onclick="document.getElementById(\'apropos\').showModal()">À propos</button>'
        extra = (f'<dialog id="apropos"><h2>{html.escape(PRODUCT_NAME)}</h2><p>Version {html.escape(cfg.shown_version)}</p>'
                 '<form method="dialog"><button>Fermer</button></form></dialog>')
    main = "<p>Bienvenue, Dr Exemple. 12 rendez-vous aujourd'hui.</p>"
    if cfg.has("version-unrelated-only"):  # a version number, but not the product's
        main += "<p>Protocole de télétransmission SESAM-Vitale version 1.40.13 installé.</p>"
    return _page(
        PRODUCT_NAME,
        f"""<header><h1>{title}</h1>
<nav><a href="/patients">Patients</a> | <a href="/agenda">Agenda</a> | {about}</nav></header>
<main>{main}</main>{extra}
<footer id="about"><p>{html.escape(PRODUCT_NAME)}{footer}<br>{html.escape(VENDOR)}</p></footer>""",
        style,
    )


def render_about(cfg: DemoConfig) -> str:
    style, _, version = _shown(cfg)
    return _page(
        f"À propos — {PRODUCT_NAME}",
        f"""<h1>À propos</h1>
<section id="a-propos"><dl><dt>Logiciel</dt><dd>{html.escape(PRODUCT_NAME)}</dd>
<dt>Éditeur</dt><dd>{html.escape(VENDOR)}</dd>{version}</dl></section>""",
        style,
    )


def api_about(cfg: DemoConfig) -> dict:
    if cfg.api_layout == "software":
        return {"software": {"name": PRODUCT_NAME, "vendor": VENDOR, "release": cfg.api_version, "build_id": cfg.fingerprint}}
    return {
        "name": PRODUCT_NAME,
        "vendor": VENDOR,
        "version": cfg.api_version,
        "build": {"fingerprint": cfg.fingerprint},
    }


class DemoServer(HttpService):
    """The demo vendor listening on loopback, in a background thread (the services kit's
    server: bounded, stopped cleanly; it records nothing, the harness records its side)."""

    name = "demo-vendor"
    server_header = "CabinetDemo"
    bounds = ConnectionBounds(max_connections=64, deadline=300.0, idle=30.0)
    max_request = 64 * 1024
    max_recorded = 0

    def __init__(self, cfg: DemoConfig, port: int = 0, host: str = "127.0.0.1") -> None:
        self.cfg = cfg
        self.dmp_status: dict = {"state": "idle"}
        self.registered: list = []  # the people registered through INSi, as its channels show them (patients.Patient)
        self._registering = threading.Lock()
        self._psc = None  # the Pro Santé Connect login, made when first configured
        self._local = None  # its own login, made when first used
        super().__init__(host=host, port=port)

    def handle(self, request: Request) -> Response:
        path = request.path
        if request.method == "POST":
            if path.startswith("/local/"):
                return self._local_post(request)
            route = {"/mssante/receive": self._mssante_receive, "/dmp/feed": self._dmp_feed, "/mssante/send": self._mssante_send,
                     "/ins/feed": self._ins_feed, "/ins/register": self._ins_register, "/psc/configure": self._psc_configure,
                     "/pdsm/publish": self._pdsm_publish, "/pdsm/consult": self._pdsm_consult, "/smt/check": self._smt_check}.get(path)
            return route(request.body) if route else Response(404, b"not found", "text/plain")
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed", "text/plain")
        cfg = self.cfg
        if path.startswith("/psc/"):
            return self._psc_page(request)
        if path == "/local/login":
            return self._local_form("login")
        if path == "/" and cfg.has("version-login-redirect"):  # the product's / sends to its login page
            return Response(302, b"", headers={"Location": "/login"})
        if path == "/" or (path == "/login" and cfg.has("version-login-redirect")):
            return Response(200, render_home(cfg).encode(), "text/html; charset=utf-8")
        if path == "/version.svg":
            return Response(200, version_svg(cfg).encode(), "image/svg+xml")
        if path == "/about":
            return Response(200, render_about(cfg).encode(), "text/html; charset=utf-8")
        if path == "/api/about":
            if cfg.token and request.header("Authorization") != f"Bearer {cfg.token}":
                return Response(401, b'{"error":"unauthorized"}', "application/json")
            return _json(200, api_about(cfg), "application/json; charset=utf-8")
        if path == "/fhir/Patient":
            asked = request.query.get("page", ["1"])[0]
            page = int(asked) if asked.isdigit() else 1
            base = f"http://{request.header('Host', 'localhost')}/fhir/"
            return Response(200, patients.fhir_search_page(set(cfg.defects), base, page, tuple(self.registered)), "application/fhir+json; charset=utf-8")
        if path == "/cda/" or (path.startswith("/cda/") and path.endswith(".xml") and path[5:-4].isdigit()):
            docs = patients.cda_documents(set(cfg.defects), cfg.document_version, tuple(self.registered))
            if path == "/cda/":
                return _json(200, [f"{n}.xml" for n in range(1, len(docs) + 1)])
            n = int(path[5:-4])
            return Response(200, docs[n - 1], "application/xml") if 1 <= n <= len(docs) else Response(404, b"not found", "text/plain")
        if path == "/dmp/status":
            return _json(200, {"dmp": self.dmp_status}, "application/json; charset=utf-8")
        if path == "/label/transcodage.csv":  # the label's transcoding table, as the software exports it
            return Response(200, transcoding_csv(set(cfg.defects)), "text/csv")
        if path == "/label/export.zip":  # its reversibility export: what a practice leaves with
            return Response(200, export_zip(set(cfg.defects), tuple(self.registered), cfg.document_version), "application/zip")
        if path in ("/patients", "/agenda"):
            return Response(200, _page(PRODUCT_NAME, "<p>Démo</p>").encode(), "text/html; charset=utf-8")
        return Response(404, b"not found", "text/plain")

    def _dmp_feed(self, body: bytes) -> Response:
        """Feed the DMP now (the harness names the DMP and the credentials folder)."""
        from .dmp_client import DmpClient

        return self._call_service(body, DmpClient, keep_status=True)

    def _pdsm_publish(self, body: bytes) -> Response:
        """Publish to PDSm now, then consult (the harness names the service and the credentials folder)."""
        from .pdsm_client import PdsmClient

        return self._call_service(body, PdsmClient)

    def _pdsm_consult(self, body: bytes) -> Response:
        """Consult PDSm now, as its patient screen does (the harness names the service)."""
        from .pdsm_client import PdsmClient

        return self._call_service(body, PdsmClient, method="consult")

    def _call_service(self, body: bytes, client, keep_status: bool = False, method: str = "run") -> Response:
        """Run ``client`` against the service the harness names (``{"url", "credentials"}``)."""
        try:
            asked = json.loads(body[:4096])
            url, credentials = str(asked["url"]), Path(str(asked["credentials"]))
        except (ValueError, KeyError, TypeError) as exc:
            return _json(400, {"error": str(exc)})
        status = getattr(client(url, credentials, set(self.cfg.defects), self.cfg.document_version), method)()
        if keep_status:  # what it tells its user about the DMP (dmp_status)
            self.dmp_status = {k: v for k, v in status.items() if k != "calls"}
        return _json(200, {"sent": len(status["calls"]), **status})

    def _smt_check(self, body: bytes) -> Response:
        """Do what the user interface does with the terminology server now (the harness names it)."""
        from .smt_client import check

        try:
            fhir = str(json.loads(body[:4096])["fhir"])
        except (ValueError, KeyError, TypeError) as exc:
            return _json(400, {"error": str(exc)})
        return _json(200, check(fhir, set(self.cfg.defects)))

    # -- Pro Santé Connect ------------------------------------------------------------------------

    def _psc_login(self):
        if self._psc is None:
            from .psc_login import PscLogin

            self._psc = PscLogin(set(self.cfg.defects))
        return self._psc

    def _psc_configure(self, body: bytes) -> Response:
        """Use this provider (the harness names its discovery address, the client it registered)."""
        from .psc_login import LoginError

        try:
            asked = json.loads(body[:8192])
            args = {k: str(asked[k]) for k in ("discovery", "client_id", "client_secret", "ca", "redirect_uri", "after_logout")}
            if isinstance(asked.get("dmp"), dict) and asked["dmp"].get("url"):  # the DMP its logged-in professionals reach
                args["dmp"] = {"url": str(asked["dmp"]["url"]), "credentials": str(asked["dmp"].get("credentials", ""))}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return _json(400, {"error": str(exc)})
        try:
            return _json(200, self._psc_login().configure(**args))
        except (OSError, ValueError, LoginError) as exc:
            return _json(502, {"error": str(exc)[:300]})

    def _psc_page(self, request: Request) -> Response:
        import requests as _requests

        from .psc_login import LoginError, page_of

        psc, cfg = self._psc_login(), self.cfg
        cookies = _cookies(request.header("Cookie"))
        path = request.path
        who = psc.who(cookies.get("demo_session", ""), float("inf") if cfg.has("eid-no-idle-timeout") else cfg.psc_idle)
        html_type = "text/html; charset=utf-8"
        if path == "/psc/login":
            body = "<p><a id='psc' class='button' href='/psc/start'>Se connecter avec Pro Santé Connect</a></p>"
            return Response(200, page_of("Connexion", body).encode(), html_type)
        if path == "/psc/start":
            try:
                url, cookie = psc.start()
            except LoginError as exc:
                return Response(503, page_of("Connexion", f"<p class='error'>{html.escape(str(exc))}</p>").encode(), html_type)
            return Response(302, b"", headers={"Location": url, "Set-Cookie": f"demo_psc_login={cookie}; Path=/psc; HttpOnly; SameSite=Lax"})
        if path == "/psc/callback":
            try:
                cookie, who = psc.callback(request.query, cookies.get("demo_psc_login", ""))
            except (LoginError, _requests.RequestException, ValueError, KeyError) as exc:
                return Response(403, page_of("Connexion refusée", f"<p class='error'>Connexion refusée : {html.escape(str(exc))}</p>"
                                             "<p><a href='/psc/login'>Recommencer</a></p>").encode(), html_type)
            target = "/psc/home" + (f"?access_token={who.access_token}" if cfg.has("psc-token-in-url") else "")
            if cfg.has("psc-cookie-readable"):  # the access token as the session cookie, readable by the page's scripts
                cookie = psc.rekey(cookie, who.access_token)
                return Response(302, b"", headers={"Location": target, "Set-Cookie": f"demo_session={cookie}; Path=/; SameSite=Lax"})
            return Response(302, b"", headers={"Location": target, "Set-Cookie": f"demo_session={cookie}; Path=/; HttpOnly; SameSite=Lax"})
        if path == "/psc/logout":
            end = psc.logout(cookies.get("demo_session", ""))
            expire = "demo_session=; Path=/; Max-Age=0; HttpOnly"
            return Response(302, b"", headers={"Location": end or "/psc/login", "Set-Cookie": expire})
        if path == "/psc/dmp":
            if who is None:
                return Response(302, b"", headers={"Location": "/psc/login"})
            return self._psc_dmp(psc, who)
        if path in ("/psc/home", "/psc/patients"):
            if who is None:
                return Response(302, b"", headers={"Location": "/psc/login"})
            leak = f"<script>window.idToken = {json.dumps(who.id_token)};</script>" if cfg.has("psc-token-in-page") else ""
            title = "Accueil" if path == "/psc/home" else "Patients"
            body = (f"<p id='who'>Connecté : {html.escape(who.given_name)} {html.escape(who.family_name)} "
                    f"({html.escape(who.national_id)})</p><nav><a href='/psc/patients'>Patients</a> "
                    f"<a id='logout' href='/psc/logout'>Se déconnecter</a></nav>{leak}")
            return Response(200, page_of(title, body).encode(), html_type)
        return Response(404, b"not found", "text/plain")

    def _psc_dmp(self, psc, who) -> Response:
        """The test patient's DMP, consulted for the professional logged in through PSC (a
        query, ITI-18, with a VIHF naming them: an indirect authentication)."""
        from .dmp_client import DmpClient
        from .psc_login import page_of

        html_type = "text/html; charset=utf-8"
        if psc.dmp is None or not psc.dmp.get("credentials"):
            return Response(503, page_of("DMP", "<p class='error'>Le DMP n'est pas configuré</p>").encode(), html_type)
        cfg = self.cfg
        named = psc.first_identity if cfg.has("psc-dmp-first-professional") and psc.first_identity else who
        client = DmpClient(psc.dmp["url"], Path(psc.dmp["credentials"]), set(cfg.defects), cfg.document_version,
                           professional=(named.national_id, named.given_name, named.family_name),
                           mode="DIRECTE" if cfg.has("psc-dmp-direct-mode") else "INDIRECTE_RENFORCEE")
        status = client.consult()
        if status["state"] != "done":
            return Response(502, page_of("DMP", f"<p class='error'>DMP : {html.escape(status.get('reason', ''))}</p>").encode(), html_type)
        body = (f"<p id='who'>Connecté : {html.escape(who.given_name)} {html.escape(who.family_name)} ({html.escape(who.national_id)})</p>"
                f"<p>DMP du patient : {status['documents']} document(s)</p>")
        return Response(200, page_of("DMP du patient", body).encode(), html_type)

    # -- its own login (password, then a TOTP code) ------------------------------------------

    def _local_login(self):
        if self._local is None:
            from .local_login import LocalLogin

            cfg = self.cfg
            password, totp = cfg.local_secrets() if cfg.local_secrets else ("", "")
            self._local = LocalLogin(set(cfg.defects), cfg.local_user, password, totp)
        return self._local

    def _local_form(self, step: str, error: str = "", status: int = 200) -> Response:
        from .psc_login import page_of

        message = f"<p class='error'>{html.escape(error)}</p>" if error else ""
        if step == "code":
            body = ("<form method='post' action='/local/code'><label>Code de l'application d'authentification "
                    "<input name='code' autocomplete='one-time-code' inputmode='numeric'></label> <button type='submit'>Valider</button></form>")
        else:
            body = ("<form method='post' action='/local/login'><label>Identifiant <input name='username' autocomplete='username'></label> "
                    "<label>Mot de passe <input type='password' name='password' autocomplete='current-password'></label> "
                    "<button type='submit'>Se connecter</button></form>")
        return Response(status, page_of("Connexion", message + body).encode(), "text/html; charset=utf-8", headers={"Cache-Control": "no-store"})

    def _local_post(self, request: Request) -> Response:
        from urllib.parse import parse_qs

        from .local_login import FAMILY, GIVEN, NATIONAL_ID
        from .psc_login import LoggedIn

        try:
            local, psc = self._local_login(), self._psc_login()
        except (HarnessError, ValueError) as exc:  # its account's files unreadable, or no TOTP secret
            return _json(503, {"error": f"connexion propre non configurée : {str(exc)[:200]}"})
        form = {k: v[0] for k, v in parse_qs(request.body[:8192].decode("utf-8", "replace")).items() if v}
        cookies = _cookies(request.header("Cookie"))

        def logged_in() -> Response:
            cookie, _ = psc._open(LoggedIn(NATIONAL_ID, GIVEN, FAMILY, "", ""))
            return Response(302, b"", headers={"Location": "/psc/home", "Set-Cookie": f"demo_session={cookie}; Path=/; HttpOnly; SameSite=Lax"})

        if request.path == "/local/login":
            outcome = local.password(form.get("username", ""), form.get("password", ""))
            if outcome == "session":
                return logged_in()
            if outcome == "code":
                response = self._local_form("code")
                response.headers["Set-Cookie"] = f"demo_2fa={local.start_code()}; Path=/local; HttpOnly; SameSite=Strict"
                return response
            return self._local_form("login", "Compte verrouillé" if outcome == "locked" else "Identifiant ou mot de passe incorrect",
                                    403 if outcome == "locked" else 401)
        if request.path == "/local/code":
            outcome = local.code(cookies.get("demo_2fa", ""), form.get("code", ""))
            if outcome == "session":
                return logged_in()
            if outcome == "expired":
                return self._local_form("login", "Recommencez la connexion", 401)
            return self._local_form("code", "Compte verrouillé" if outcome == "locked" else "Code incorrect", 403 if outcome == "locked" else 401)
        if request.path == "/local/enrol":  # a new means of identification (a TOTP application) for the logged-in professional
            who = psc.who(cookies.get("demo_session", ""), self.cfg.psc_idle)
            if who is None and not self.cfg.has("eid-enrol-anonymous"):
                return _json(401, {"error": "authentification requise"})
            return _json(200, {"enrolled": True, "secret_shown": False})
        return Response(404, b"not found", "text/plain")

    def _mssante_send(self, body: bytes) -> Response:
        """Send the MSSanté message now (the harness names the operator's SMTP server)."""
        from .mssante_client import send

        try:
            asked = json.loads(body[:4096])
            host, port, tls = str(asked["host"]), int(asked["port"]), str(asked.get("tls") or "starttls")
            certificate = asked.get("certificate")
        except (ValueError, KeyError, TypeError) as exc:
            return _json(400, {"error": str(exc)})
        cfg = self.cfg
        return _json(200, send(host, port, tls, str(certificate) if certificate else None, set(cfg.defects), cfg.document_version))

    def _mssante_receive(self, body: bytes) -> Response:
        """Read the MSSanté mailbox now and answer what cannot be integrated."""
        import imaplib
        import smtplib

        from .mssante_inbox import receive

        try:
            asked = json.loads(body[:8192])
            imap_conf, smtp_conf = dict(asked["imap"]), dict(asked["smtp"])
        except (ValueError, KeyError, TypeError) as exc:
            return _json(400, {"error": str(exc)})
        try:
            status = receive(imap_conf, smtp_conf, set(self.cfg.defects))
        except (imaplib.IMAP4.error, smtplib.SMTPException, OSError, KeyError) as exc:
            return _json(502, {"error": str(exc)[:300]})
        return _json(200, status)

    def _ins_feed(self, body: bytes) -> Response:
        try:
            host, port = patients.feed_address(body[:4096])
        except (ValueError, KeyError, TypeError) as exc:
            return _json(400, {"error": str(exc)})
        try:
            codes = patients.send_feed(set(self.cfg.defects), host, port, extra=tuple(self.registered))
        except OSError as exc:
            return _json(502, {"error": f"MLLP: {exc}"})
        return _json(200, {"sent": len(codes), "acks": codes})


    def _ins_register(self, body: bytes) -> Response:
        """Register people now, through the INSi the harness names (its address and the
        credentials folder): each one's status and what the demo told its user."""
        from .insi_client import register

        from dataclasses import replace

        from .dmp_client import DmpClient
        from .mssante_client import send

        try:
            asked = json.loads(body[:65536])
            url, credentials = str(asked["url"]), Path(str(asked["credentials"]))
            people = [dict(p) for p in asked["patients"]][:50]
            for person in people:
                person["first_names"] = [str(n) for n in person["first_names"]]
            dmp = asked.get("dmp") or None  # the DMP the professional shares each new patient's note to
            if dmp is not None:
                dmp = (str(dmp["url"]), Path(str(dmp["credentials"])))
            mss = asked.get("mssante") or None  # the MSSanté operator the note goes to a colleague through
            if mss is not None:
                mss = (str(mss["host"]), int(mss["port"]), str(mss.get("tls") or "starttls"), str(mss["certificate"]) if mss.get("certificate") else None)
        except (ValueError, KeyError, TypeError) as exc:
            return _json(400, {"error": str(exc)})
        out = []
        with self._registering:
            for person in people:
                traits = {k: str(person[k]) for k in ("birth_name", "sex", "birth_date") if k in person}
                traits["first_names"] = person["first_names"]
                if person.get("birth_place"):
                    traits["birth_place"] = str(person["birth_place"])
                try:
                    held = register(traits, url, credentials, defects=set(self.cfg.defects), release=self.cfg.api_version,
                                    document=str(person.get("document") or ""), claimed_ins=str(person.get("ins") or ""),
                                    claimed_from=str(person.get("ins_from") or ""))
                except (KeyError, OSError) as exc:
                    return _json(400, {"error": f"{type(exc).__name__}: {exc}"})
                shown = patients.registered_patient(len(self.registered) + 1, held)
                self.registered.append(shown)
                said = {"ref": person.get("ref"), "status": held.status, "message": held.told_user, "report": held.report, "calls": held.calls}
                # only a qualified identity's INS goes to the DMP or in a message (the defects: a recovered one's too)
                defects = set(self.cfg.defects)
                shares = bool(held.ins) and (held.status == "QUAL" or "insi-shares-unqualified" in defects)
                mails = bool(held.ins) and (held.status == "QUAL" or "insi-mails-unqualified" in defects)
                if dmp is not None:
                    said["dmp"] = DmpClient(dmp[0], dmp[1], defects, self.cfg.document_version).share(
                        replace(shown, ins=held.ins), held.oid or patients.TEST_NIR)["state"] if shares else "not-shared"
                if mss is not None:
                    said["mssante"] = send(*mss, set(self.cfg.defects), self.cfg.document_version, replace(shown, ins=held.ins))["state"] \
                        if mails else "not-sent"
                out.append(said)
        return _json(200, {"registered": out})


def _cookies(header: str) -> dict[str, str]:
    from http.cookies import CookieError, SimpleCookie

    jar = SimpleCookie()
    try:
        jar.load(header[:4096])
    except CookieError:
        return {}
    return {k: m.value for k, m in jar.items()}


def _json(status: int, value, content_type: str = "application/json") -> Response:
    return Response.json(status, value, content_type)
