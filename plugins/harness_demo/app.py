"""The demo vendor application: an HTML user interface and a JSON API, on loopback.

It behaves like a conformant vendor system unless started with named defects, each of
which breaks exactly one behaviour a scenario checks.
"""
from __future__ import annotations

import hashlib
import html
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from harness import Message, catalogue

from . import patients
from .dmp_defects import DMP_DEFECTS
from .mssante_defects import MSSANTE_DEFECTS
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
}

DEFECTS.update(INS_DEFECTS)
DEFECTS.update(TERMINOLOGY_DEFECTS)
DEFECTS.update(CDA_DEFECTS)
DEFECTS.update(DMP_DEFECTS)
DEFECTS.update(MSSANTE_DEFECTS)

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
    def fingerprint(self) -> str:
        """The build fingerprint: what the code is, not what it claims to be."""
        material = json.dumps({"source": _SOURCE_DIGEST, "release": self.release, "defects": self.defects,
                               **({"build": self.build} if self.build else {})}, sort_keys=True)
        return "sha256:" + hashlib.sha256(material.encode()).hexdigest()[:32]


def _page(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="fr">
<head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} footer{{margin-top:3em;color:#555;border-top:1px solid #ccc}}</style>
</head>
<body>
{body}
</body>
</html>
"""


def render_home(cfg: DemoConfig) -> str:
    version = "" if cfg.has("version-hidden") else f" — version {html.escape(cfg.shown_version)}"
    return _page(
        PRODUCT_NAME,
        f"""<header><h1>{html.escape(PRODUCT_NAME)}</h1>
<nav><a href="/patients">Patients</a> | <a href="/agenda">Agenda</a> | <a href="/about">À propos</a></nav></header>
<main><p>Bienvenue, Dr Exemple. 12 rendez-vous aujourd'hui.</p></main>
<footer id="about"><p>{html.escape(PRODUCT_NAME)}{version}<br>{html.escape(VENDOR)}</p></footer>""",
    )


def render_about(cfg: DemoConfig) -> str:
    version = "" if cfg.has("version-hidden") else f"<dt>Version</dt><dd>{html.escape(cfg.shown_version)}</dd>"
    return _page(
        f"À propos — {PRODUCT_NAME}",
        f"""<h1>À propos</h1>
<section id="a-propos"><dl><dt>Logiciel</dt><dd>{html.escape(PRODUCT_NAME)}</dd>
<dt>Éditeur</dt><dd>{html.escape(VENDOR)}</dd>{version}</dl></section>""",
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    cfg: DemoConfig
    dmp_status: dict = {"state": "idle"}


class _Handler(BaseHTTPRequestHandler):
    """One request to the demo vendor, configured by ``self.server.cfg``."""

    server: _Server
    server_version = "CabinetDemo"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _api(self, cfg: DemoConfig) -> None:
        if cfg.token and self.headers.get("Authorization") != f"Bearer {cfg.token}":
            self._send(401, b'{"error":"unauthorized"}', "application/json")
            return
        self._send(200, json.dumps(api_about(cfg), ensure_ascii=False).encode(), "application/json; charset=utf-8")

    def _fhir(self, cfg: DemoConfig) -> None:
        asked = parse_qs(urlsplit(self.path).query).get("page", ["1"])[0]
        page = int(asked) if asked.isdigit() else 1
        base = f"http://{self.headers.get('Host', 'localhost')}/fhir/"
        self._send(200, patients.fhir_search_page(set(cfg.defects), base, page), "application/fhir+json; charset=utf-8")

    def _cda(self, cfg: DemoConfig, path: str) -> None:
        docs = patients.cda_documents(set(cfg.defects), cfg.api_version)
        if path == "/cda/":
            self._send(200, json.dumps([f"{n}.xml" for n in range(1, len(docs) + 1)]).encode(), "application/json")
            return
        n = int(path[5:-4])
        if 1 <= n <= len(docs):
            self._send(200, docs[n - 1], "application/xml")
        else:
            self._send(404, b"not found", "text/plain")

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        cfg = self.server.cfg
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(200, render_home(cfg).encode(), "text/html; charset=utf-8")
        elif path == "/about":
            self._send(200, render_about(cfg).encode(), "text/html; charset=utf-8")
        elif path == "/api/about":
            self._api(cfg)
        elif path == "/fhir/Patient":
            self._fhir(cfg)
        elif path == "/cda/" or (path.startswith("/cda/") and path.endswith(".xml") and path[5:-4].isdigit()):
            self._cda(cfg, path)
        elif path == "/dmp/status":
            self._send(200, json.dumps({"dmp": self.server.dmp_status}, ensure_ascii=False).encode(), "application/json; charset=utf-8")
        elif path in ("/patients", "/agenda"):
            self._send(200, _page(PRODUCT_NAME, "<p>Démo</p>").encode(), "text/html; charset=utf-8")
        else:
            self._send(404, b"not found", "text/plain")

    def _dmp_feed(self) -> None:
        """Feed the DMP now (the harness names the DMP and the credentials folder)."""
        from .dmp_client import DmpClient

        try:
            length = int(self.headers.get("Content-Length", "0"))
            asked = json.loads(self.rfile.read(min(length, 4096)))
            url, credentials = str(asked["url"]), Path(str(asked["credentials"]))
        except (ValueError, KeyError, TypeError, OSError) as exc:
            self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
            return
        cfg = self.server.cfg
        status = DmpClient(url, credentials, set(cfg.defects), cfg.api_version).run()
        self.server.dmp_status = {k: v for k, v in status.items() if k != "calls"}
        self._send(200, json.dumps({"sent": len(status["calls"]), **status}, ensure_ascii=False).encode(), "application/json")

    def _mssante_send(self) -> None:
        """Send the MSSanté message now (the harness names the operator's SMTP server)."""
        from .mssante_client import send

        try:
            length = int(self.headers.get("Content-Length", "0"))
            asked = json.loads(self.rfile.read(min(length, 4096)))
            host, port, tls = str(asked["host"]), int(asked["port"]), str(asked.get("tls") or "starttls")
            certificate = asked.get("certificate")
        except (ValueError, KeyError, TypeError, OSError) as exc:
            self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
            return
        cfg = self.server.cfg
        status = send(host, port, tls, str(certificate) if certificate else None, set(cfg.defects), cfg.api_version)
        self._send(200, json.dumps(status, ensure_ascii=False).encode(), "application/json")

    def _mssante_receive(self) -> None:
        """Read the MSSanté mailbox now and answer what cannot be integrated."""
        import imaplib
        import smtplib

        from .mssante_inbox import receive

        try:
            length = int(self.headers.get("Content-Length", "0"))
            asked = json.loads(self.rfile.read(min(length, 8192)))
            imap_conf, smtp_conf = dict(asked["imap"]), dict(asked["smtp"])
        except (ValueError, KeyError, TypeError, OSError) as exc:
            self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
            return
        try:
            status = receive(imap_conf, smtp_conf, set(self.server.cfg.defects))
        except (imaplib.IMAP4.error, smtplib.SMTPException, OSError, KeyError) as exc:
            self._send(502, json.dumps({"error": str(exc)[:300]}).encode(), "application/json")
            return
        self._send(200, json.dumps(status, ensure_ascii=False).encode(), "application/json")

    def do_POST(self) -> None:  # noqa: N802
        if self.path.split("?", 1)[0] == "/mssante/receive":
            self._mssante_receive()
            return
        if self.path.split("?", 1)[0] == "/dmp/feed":
            self._dmp_feed()
            return
        if self.path.split("?", 1)[0] == "/mssante/send":
            self._mssante_send()
            return
        if self.path.split("?", 1)[0] != "/ins/feed":
            self._send(404, b"not found", "text/plain")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            host, port = patients.feed_address(self.rfile.read(min(length, 4096)))
        except (ValueError, KeyError, TypeError, OSError) as exc:
            self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
            return
        try:
            codes = patients.send_feed(set(self.server.cfg.defects), host, port)
        except OSError as exc:
            self._send(502, json.dumps({"error": f"MLLP: {exc}"}).encode(), "application/json")
            return
        self._send(200, json.dumps({"sent": len(codes), "acks": codes}).encode(), "application/json")


class DemoServer:
    """The demo vendor listening on loopback, in a background thread."""

    def __init__(self, cfg: DemoConfig, port: int = 0, host: str = "127.0.0.1") -> None:
        self.cfg = cfg
        self.httpd = _Server((host, port), _Handler)
        self.httpd.cfg = cfg
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="demo-vendor", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> "DemoServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
