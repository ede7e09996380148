"""The live view of a run (``--live [ADDRESS]``), for verification sessions held with the
vendor (the DUO mode): a read-only page that shows each scenario as it starts, each
artefact and finding as it is recorded, the screenshots, and the final verdicts.

It listens on loopback unless an address is given; every path starts with a random token
(``/<token>/``), any other path is a 404, any method but GET a 405; the page loads nothing
from elsewhere (Content-Security-Policy), writes what the software produced as text only
(``textContent``), and serves images only: the screenshots the run recorded, by hash. It
stops when the run ends, unless ``--live-linger SECONDS`` keeps the final page a while.
"""
from __future__ import annotations

import hmac
import json
import re
import secrets
from http import HTTPStatus
from typing import Callable

from .events import EventHub
from ..services.bounds import ConnectionBounds
from ..services.http import HttpService, Request, Response
from ..messages import catalogue

M = catalogue(__name__)

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
MAX_BATCH = 2000  # events in one answer
# a page polls with short requests: 16 connections at once, 30 s each in all, 10 s without a
# byte (a slowloris of a hundred connections holds 16 of them, each for 30 s at most)
BOUNDS = ConnectionBounds(max_connections=16, deadline=30.0, idle=10.0)
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def page(lang: str, run_id: str, product: str) -> bytes:
    from jinja2 import Environment, PackageLoader, select_autoescape

    labels = {"title": M("live.title"), "running_state": M("live.running_state"), "finished": M("live.finished"), "lost": M("live.lost"),
              "in_progress": M("live.in_progress"), "done": M("live.done"), "now": M("live.now"), "bundle": M("live.bundle"),
              "read_only": M("live.read_only")}
    env = Environment(loader=PackageLoader("harness", "templates"), autoescape=select_autoescape(default=True))
    return env.get_template("live.html.j2").render(lang=lang, run_id=run_id, product=product,
                                                   L={k: v.render(lang) for k, v in labels.items()}).encode("utf-8")


def parse_address(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST``, ``:PORT`` or ``PORT``; loopback and a free port by default."""
    host, port = "127.0.0.1", 0
    value = (value or "").strip()
    if value.startswith("[") and "]" in value:  # [::1]:8080
        host, _, rest = value[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") and rest[1:] else 0
    elif value.isdigit():
        port = int(value)
    elif ":" in value:
        h, _, p = value.rpartition(":")
        host, port = h or host, int(p) if p else 0
    elif value:
        host = value
    if not 0 <= port <= 65535:
        raise ValueError(value)
    return host, port


class LiveView(HttpService):
    """The server; ``images`` returns an image's bytes by hash (staging store, then the bundle).

    Read-only (GET and HEAD); every answer carries the headers a page of the harness's own
    needs (no caching, no framing, a strict content policy); nothing is recorded: it is the
    harness's page, not an exchange with the software."""

    name = "live"
    server_header = "harness-live"
    bounds = BOUNDS
    max_request = 64 * 1024
    max_recorded = 0
    headers = {
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self'; "
                                   "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    }

    def __init__(self, hub: EventHub, address: str, page: Callable[[], bytes], images: Callable[[str], bytes | None]) -> None:
        self.hub = hub
        self.token = secrets.token_urlsafe(24)
        self.page = page
        self.images = images
        host, port = parse_address(address)
        super().__init__(host=host, port=port)
        self.start()

    def handle(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only\n")
        prefix = f"/{self.token}/"
        path = request.path
        if not hmac.compare_digest(path[: len(prefix)].encode(), prefix.encode()):
            return Response(HTTPStatus.NOT_FOUND, b"not found\n")
        rest = path[len(prefix):]
        if rest == "":
            return Response(HTTPStatus.OK, self.page(), "text/html; charset=utf-8")
        if rest == "live.js":
            return Response(HTTPStatus.OK, LIVE_JS.encode("utf-8"), "text/javascript; charset=utf-8")
        if rest == "events":
            try:
                after = max(0, int(request.query.get("after", ["0"])[0]))
            except ValueError:
                after = 0
            return Response(HTTPStatus.OK, self.events(after), "application/json")
        if rest.startswith("image/") and _DIGEST.match(rest[6:]):
            media_type = self.image_type(rest[6:])
            data = self.images(rest[6:]) if media_type else None
            if data is not None:
                return Response(HTTPStatus.OK, data, media_type)
        return Response(HTTPStatus.NOT_FOUND, b"not found\n")

    @property
    def url(self) -> str:
        return f"{self.base_url}{self.token}/"

    def image_type(self, digest: str) -> str | None:
        media_type = self.hub.images.get(digest)
        return media_type if media_type in IMAGE_TYPES else None

    def events(self, after: int) -> bytes:
        batch = self.hub.since(after)[:MAX_BATCH]
        body = {"next": after + len(batch), "events": batch, "done": dict(self.hub.done), "total": self.hub.total,
                "running": list(self.hub.running.values()), "finished": self.hub.finished}
        return json.dumps(body, ensure_ascii=False).encode("utf-8")


# The page's script: polls the events and writes every text with textContent (nothing the
# software produced is ever parsed as HTML).
LIVE_JS = r"""
"use strict";
const lang = document.documentElement.lang || "fr";
const $ = (id) => document.getElementById(id);
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; }
const scenarios = new Map();
let next = 0;
function scenario(id, title) {
  if (!scenarios.has(id)) {
    const box = el("section", "scenario running"); box.id = "sc-" + id; box.dataset.scenario = id;
    const h = el("h3"); const v = el("span", "v", "…"); h.append(v, " ", el("span", "title", title || id), " ", el("code", "", id));
    const steps = el("ul", "steps"), findings = el("ul", "findings"), shots = el("div", "shots");
    box.append(h, steps, findings, shots); $("scenarios").append(box);
    scenarios.set(id, {box, v, steps, findings, shots});
  }
  return scenarios.get(id);
}
function apply(e) {
  if (e.kind === "scenario.start") { const s = scenario(e.scenario, (e.title || {})[lang]); s.v.textContent = document.body.dataset.running; s.box.scrollIntoView({block: "nearest"}); }
  else if (e.kind === "step.start") { scenario(e.scenario).steps.append(el("li", "step", e.step_kind + " " + e.name)); }
  else if (e.kind === "artefact") {
    const s = e.scenario && scenarios.get(e.scenario); if (!s) return;
    if (e.media_type && e.media_type.startsWith("image/")) { const img = el("img", "screenshot"); img.src = "image/" + e.sha256; img.alt = e.label; s.shots.append(img); }
    else { s.steps.append(el("li", "artefact", e.label + " — " + e.sha256.slice(0, 12) + " (" + e.size + " o)")); }
  }
  else if (e.kind === "finding") { const s = scenario(e.scenario); s.findings.append(el("li", "finding s-" + e.severity, "[" + e.rule + "] " + e.severity + " " + e.requirement + " @ " + e.location + " : " + ((e.message || {})[lang] || ""))); }
  else if (e.kind === "scenario.end") { const s = scenario(e.scenario); s.v.textContent = e.verdict; s.v.className = "v v-" + e.verdict; s.box.classList.remove("running"); s.box.classList.add("ended"); }
}
async function poll() {
  try {
    const r = await fetch("events?after=" + next, {cache: "no-store"});
    const body = await r.json();
    body.events.forEach(apply); next = body.next;
    $("done").textContent = Object.keys(body.done).length + " / " + body.total;
    $("running").textContent = body.running.map((x) => x.scenario + " — " + x.step_kind + " " + x.step).join(" ; ");
    if (body.finished) {
      $("state").textContent = document.body.dataset.finished; $("bundle").textContent = body.finished.bundle || "";
      const t = $("verdicts"); t.textContent = "";
      Object.entries(body.finished.requirements || {}).forEach(([req, v]) => { const tr = el("tr", "requirement"); tr.append(el("td", "", req), el("td", "v v-" + v, v)); t.append(tr); });
      if (body.events.length === 0) return;
    }
  } catch (err) { $("state").textContent = document.body.dataset.lost; }
  setTimeout(poll, 700);
}
poll();
"""
