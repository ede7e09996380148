"""Collector of the Pro Santé Connect plugin: the professional's logins through the stand-in,
driven in a real browser, and what the stand-in saw of them.

Target file::

    [endpoints]
    psc = "service://psc/"                  # the stand-in the software is configured with
    psc_login = "..."                       # the software's page with its Pro Santé Connect button
    psc_callback = "..."                    # its redirect URI (registered at the stand-in)
    psc_protected = "..."                   # a page only a logged-in professional may see
    psc_after_logout = "..."                # optional: where PSC sends the browser back after logout
    psc_configure = "..."                   # optional: POST {discovery, client_id, client_secret, ca, redirect_uri, after_logout}

    [psc]
    client_id = "..."                       # the client the software is registered as
    professional = "kit-doc0036624"         # who logs in: one of the stand-in's test professionals (harness_psc.professionals)
    means = "e-CPS"
    attacks = [...]                         # the answers the software must refuse (default: all)
    login_button = "Pro Sant[ée] Connect"   # the accessible name of its login button or link
    logout_button = "..."                   # ... and of its logout
    deadline = 20                           # seconds for each browser step
    at_once = 4                             # attacks tried side by side (1: one after another; at most 16)

    [credentials]
    psc_client_secret = "env:..."           # its secret (scrubbed from everything recorded)

Each attempt is recorded (``psc-attempt/NN``: where the browser went, what the pages said,
the cookies with their flags, what scripts could read; the screenshot after the login),
with every token the stand-in issued replaced by its digest where it appears; the stand-in's
exchanges are recorded as the facts it decided (``psc.provider``), without tokens.
"""
from __future__ import annotations

import hashlib
import json

from harness import CollectContext, HarnessError, NotApplicable, browser, catalogue, collector

from .professionals import MEANS
from .provider import ATTACKS, PscProvider

M = catalogue(__name__)
DEADLINE = 20.0
LOGIN_BUTTON = r"Pro\s*Sant[ée]\s*Connect"
LOGOUT_BUTTON = r"(se\s+)?d[ée]connect|d[ée]connexion|log\s*out|sign\s*out"
AT_ONCE = 4  # attacks tried side by side by default (a demo environment serves a few professionals at once)
MAX_AT_ONCE = 16
SCANNED = ("url", "text", "html", "script_cookie")  # the strings of a browser state searched for tokens


def _digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]


def _scan(state: dict | None, tokens: list[tuple[str, str]], where: str, leaks: list[dict]) -> None:
    """Where each token shows in one browser state (an address, the page, what scripts read)."""
    if not state:
        return
    places = {k: str(state.get(k) or "") for k in SCANNED}
    places.update({f"local_storage:{k}": str(v) for k, v in (state.get("local_storage") or {}).items()})
    places.update({f"session_storage:{k}": str(v) for k, v in (state.get("session_storage") or {}).items()})
    for c in state.get("cookies") or []:
        places[f"cookie:{c.get('name')}{'' if c.get('httpOnly') else ' (readable by scripts)'}"] = str(c.get("value") or "")
    for kind, value in tokens:
        for place, text in places.items():
            if value and value in text:
                leaks.append({"where": where, "place": place, "token": kind, "digest": _digest(value)})


def redact(value, tokens: list[tuple[str, str]]):
    """``value`` with each token replaced by its digest (markup dropped: scanned, not kept)."""
    if isinstance(value, str):
        for _, token in tokens:
            if token and token in value:
                value = value.replace(token, f"[jeton {_digest(token)}]")
        return value
    if isinstance(value, dict):
        return {k: redact(v, tokens) for k, v in value.items() if k != "html"}  # markup: scanned, not kept
    if isinstance(value, list):
        return [redact(v, tokens) for v in value]
    return value


def setup(ctx: CollectContext, outputs: dict, label: str = "psc-configure", extra: dict | None = None) -> tuple:
    """The stand-in of this run with the software's client registered, the software told
    where PSC is (``psc_configure``, with ``extra``: where the services it reaches through
    the login are): (stand-in, professional, means, client id)."""
    url = ctx.endpoint("psc")
    if url is None:
        raise NotApplicable(M("collect.no_psc"))
    provider = PscProvider.running(url)
    if provider is None:
        raise HarnessError(M("collect.not_stand_in", url=url))
    conf = ctx.target.section("psc")
    missing = [e for e in ("psc_login", "psc_callback", "psc_protected") if ctx.endpoint(e) is None]
    if missing:
        raise HarnessError(M("collect.endpoints", missing=", ".join(missing)))
    who = str(conf.get("professional", "kit-doc0036624"))
    if who not in provider.professionals:
        raise HarnessError(M("collect.unknown_professional", key=who, known=", ".join(provider.professionals)))
    means = str(conf.get("means", "e-CPS"))
    if means not in MEANS:
        raise HarnessError(M("collect.unknown_means", means=means, known=", ".join(MEANS)))
    client_id = str(conf.get("client_id") or "harness-psc-client")
    secret = ctx.target.secret("psc_client_secret") or ""
    after_logout = ctx.endpoint("psc_after_logout") or ctx.endpoint("psc_login")
    provider.register(client_id, secret=secret, redirect_uris=(ctx.endpoint("psc_callback"),), post_logout_redirect_uris=(after_logout,))
    configure = ctx.endpoint("psc_configure")
    if configure is not None:
        body = json.dumps({"discovery": provider.base_url.rstrip("/") + "/auth/realms/esante-wallet/.well-known/openid-configuration",
                           "client_id": client_id, "client_secret": secret, "ca": str(provider.ca_file), "redirect_uri": ctx.endpoint("psc_callback"),
                           "after_logout": after_logout, **(extra or {})}).encode()
        res = ctx.http.post(configure, label=label, body=body, headers={"Content-Type": "application/json"})
        outputs[f"{label}.exchange"] = res.exchange
        if not res.ok:
            raise HarnessError(M("collect.configure_refused", url=configure, status=res.status or "-"))
    return provider, who, means, client_id


def browser_args(ctx: CollectContext, provider, deadline: float) -> dict:
    """What every driver of the plugin needs: the browser, the stand-in, the software's pages."""
    conf = ctx.target.section("psc")
    return {"browser": browser.find_browser(), "provider": provider.base_url, "spki": provider.spki_sha256,
            "login_url": ctx.endpoint("psc_login"), "protected_url": ctx.endpoint("psc_protected"),
            "login_button": str(conf.get("login_button", LOGIN_BUTTON)), "logout_button": str(conf.get("logout_button", LOGOUT_BUTTON)),
            "deadline": deadline, "loopback_only": ctx.offline}


@collector(produces=["psc.logins", "psc.provider", "psc-attempt", "psc-shot", "psc-configure.exchange"], once_per_run=True)
def collect_logins(ctx: CollectContext) -> dict:
    """The conformant login (then logout) and each attack, in one sandboxed browser."""
    outputs: dict = {}
    provider, who, means, client_id = setup(ctx, outputs)
    conf = ctx.target.section("psc")
    attacks = list(conf.get("attacks", list(ATTACKS)))
    unknown = sorted(set(attacks) - set(ATTACKS))
    if unknown:
        raise HarnessError(M("collect.unknown_attacks", unknown=", ".join(unknown), known=", ".join(ATTACKS)))
    first = len(provider.journal.exchanges)
    issued_before = len(provider.issued)
    deadline = float(conf.get("deadline", DEADLINE))
    attempts = [{"n": 1, "answer": "", "professional": who, "means": means, "logout": True}] + \
        [{"n": n, "answer": a, "professional": who, "means": means} for n, a in enumerate(attacks, 2)]
    at_once = int(conf.get("at_once", AT_ONCE))
    if not 1 <= at_once <= MAX_AT_ONCE:
        raise HarnessError(M("collect.at_once", value=at_once, most=MAX_AT_ONCE))
    args = {**browser_args(ctx, provider, deadline), "attempts": attempts, "national_id": provider.professionals[who].national_id,
            "at_once": at_once}
    executable = args["browser"]
    if executable is None:
        result, error = None, "no-browser"
    else:
        result, error = browser.run_driver("harness_psc.drive:logins", args, total=deadline * 4 * len(attempts))
    tokens = provider.issued[issued_before:]
    record = {"stand_in": provider.base_url, "issuer": provider.issuer, "client_id": client_id, "professional": who, "means": means,
              "expected": _expected(provider, who), "browser": (result or {}).get("browser") or executable, "sandbox": (result or {}).get("sandbox"),
              "error": error or (result or {}).get("error"), "leaks": [], "attempts": []}
    for n, attempt in enumerate((result or {}).get("attempts", []), 1):
        for where in ("after", "protected", "after_logout"):
            _scan(attempt.get(where), tokens, f"{n:02d}:{where}", record["leaks"])
        for url in attempt.get("navigations", []):
            _scan({"url": url}, tokens, f"{n:02d}:navigation", record["leaks"])
        shot = (attempt.get("after") or {}).pop("shot", None)
        clean = redact(attempt, tokens)
        if isinstance(shot, bytes) and shot:
            outputs[f"psc-shot/{n:02d}"] = ctx.record(shot, media_type="image/png", label=f"psc.screenshot:{n:02d}")
            clean["shot"] = f"psc-shot/{n:02d}"
        outputs[f"psc-attempt/{n:02d}"] = ctx.record_json(clean, label=f"psc.attempt:{n:02d}")
        record["attempts"].append({"n": n, "answer": attempt.get("answer", ""), "input": f"psc-attempt/{n:02d}"})
    exchanges = [{"n": ex.n, "at": ex.at, "method": ex.method, "path": ex.path.split("?")[0], "http_status": ex.http_status,
                  "facts": redact(ex.facts, tokens)} for ex in provider.journal.exchanges[first:]]
    outputs["psc.provider"] = ctx.record_json({"discovery": provider.discovery(), "exchanges": exchanges,
                                               "sessions": {sid: {"professional": s.professional.national_id, "means": s.means,
                                                                  "ended_by": s.ended_by or None} for sid, s in provider.sessions.items()}},
                                              label="psc.provider")
    outputs["psc.logins"] = ctx.record_json(record, label="psc.logins")
    return outputs


def _expected(provider, key: str) -> dict:
    p = provider.professionals[key]
    return {"national_id": p.national_id, "given_name": p.given_name, "family_name": p.family_name}
