"""Checks of the Pro Santé Connect plugin, from the recorded attempts and the stand-in's facts
alone (replay re-derives them offline, without logging in again).

Sources: OpenID Connect Core 1.0 (3.1.2.1 the authentication request: ``state``, ``nonce``;
3.1.3.7 the ID token's validation: signature, ``iss``, ``aud``, ``exp``, ``nonce``, ``acr``;
3.1.2.6 an error answer); RFC 7636 (PKCE) and RFC 9700, the OAuth 2.0 security best current
practice (PKCE; no token in a URL: 2.1, 4.3); OpenID Connect RP-Initiated Logout 1.0; PSC's
integration documentation (acr ``eidas1``, scopes, the userinfo's claims).
"""
from __future__ import annotations

from harness import CheckContext, Evaluation, Severity, catalogue, check

M = catalogue(__name__)
BLOCKING = 400  # an HTTP status from which a page is not shown


def _logins(ctx: CheckContext, ev: Evaluation) -> dict | None:
    if not ctx.has("psc.logins"):
        ev.error(M("check.no_logins"))
        return None
    logins = ctx.json("psc.logins")
    if logins.get("error") == "no-browser":
        ev.inconclusive(M("check.no_browser"))
        return None
    if logins.get("error"):
        ev.error(M("check.browser_failed", error=logins["error"]))
        return None
    return logins


def _attempts(ctx: CheckContext, logins: dict) -> list[dict]:
    return [{**ctx.json(a["input"]), "n": a["n"]} for a in logins["attempts"] if ctx.has(a["input"])]


def shows(state: dict | None, expected: dict) -> bool:
    """The page names the professional: their national identifier, or both their names."""
    text = str((state or {}).get("text") or "").casefold()
    return expected["national_id"] in text or (expected["family_name"].casefold() in text and expected["given_name"].casefold() in text)


def logged_in(attempt: dict, expected: dict) -> bool:
    """After the attempt, the page only a logged-in professional may see shows this one."""
    page = attempt.get("protected") or {}
    return bool(page) and (page.get("status") or 0) < BLOCKING and shows(page, expected)


def _reached(attempt: dict) -> bool:
    """The attempt went through the stand-in's page and came back to the software."""
    return any(s["step"] == "back" for s in attempt.get("steps", []))


def _segments(provider: dict) -> dict[int, dict]:
    """The stand-in's exchanges of each attempt: its authorization request (by its login page),
    its login, then the token, userinfo and logout calls of the session it opened."""
    exchanges = provider["exchanges"]
    pages = {ex["facts"].get("login_page"): ex for ex in exchanges if ex["facts"].get("endpoint") == "authorize"}
    out: dict[int, dict] = {}
    for ex in exchanges:
        f = ex["facts"]
        if f.get("endpoint") != "login" or "attempt" not in f:
            continue
        sid = f.get("session")
        out[f["attempt"]] = {
            "authorize": pages.get(f.get("login_page")), "login": ex,
            "token": [e for e in exchanges if e["facts"].get("endpoint") == "token" and sid
                      and (e["facts"].get("id_token_claims") or {}).get("sid") == sid],
            "userinfo": [e for e in exchanges if e["facts"].get("endpoint") == "userinfo" and sid and e["facts"].get("session") == sid],
            "logout": [e for e in exchanges if e["facts"].get("endpoint") == "logout" and sid and e["facts"].get("session") == sid],
        }
    return out


def _shot(ctx: CheckContext, attempt: dict) -> str | None:
    """The digest of the attempt's screenshot (after the login), when it was taken."""
    name = attempt.get("shot")
    return ctx.artefact(name).sha256 if name and ctx.has(name) else None


def _where(attempt: dict) -> str:
    return f"psc-attempt/{attempt['n']:02d}"


@check(reads=["psc.logins", "psc.provider", "psc-attempt", "psc-shot"])
def check_login(ctx: CheckContext, ev: Evaluation) -> None:
    """The conformant login: a code flow with state, nonce, PKCE as announced and the eidas1
    level requested; the software then shows the professional PSC named."""
    logins = _logins(ctx, ev)
    if logins is None:
        return
    attempts = _attempts(ctx, logins)
    first = next((a for a in attempts if a["answer"] == ""), None)
    if first is None or not _reached(first):
        ev.error(M("check.login_not_reached", error=(first or {}).get("error", "-")))
        return
    provider = ctx.json("psc.provider")
    seg = _segments(provider).get(first["n"])
    where = _where(first)
    if seg is None or seg["authorize"] is None:
        ev.error(M("check.no_exchange", attempt=first["n"]))
        return
    asked = seg["authorize"]["facts"].get("requested") or {}
    ev.check(asked.get("response_type") == "code", rule="PSC-LOGIN-01", location=where,
             message=M("check.not_code", response_type=asked.get("response_type") or "-"))
    f = seg["authorize"]["facts"]
    ev.check(bool(f.get("state_sent")) and bool(f.get("nonce_sent")), rule="PSC-LOGIN-02", location=where,
             message=M("check.no_state_nonce", state="oui" if f.get("state_sent") else "non", nonce="oui" if f.get("nonce_sent") else "non"))
    if "S256" in provider["discovery"].get("code_challenge_methods_supported", []):
        ev.check(asked.get("code_challenge_method") == "S256", rule="PSC-LOGIN-03", location=where,
                 message=M("check.no_pkce", method=asked.get("code_challenge_method") or "-"))
    ev.check("eidas1" in str(asked.get("acr_values") or "").split(), rule="PSC-LOGIN-04", location=where,
             message=M("check.no_acr", acr=asked.get("acr_values") or "-"))
    issued = any(e["facts"].get("outcome") == "issued" for e in seg["token"])
    answered = any(e["facts"].get("outcome") == "answered" for e in seg["userinfo"])
    ev.check(issued and answered, rule="PSC-LOGIN-05", location=where,
             message=M("check.no_tokens", token="oui" if issued else "non", userinfo="oui" if answered else "non"))
    expected = ctx.json("psc.logins")["expected"]
    ev.check(logged_in(first, expected), rule="PSC-LOGIN-06", location=where, artefact=_shot(ctx, first),
             message=M("check.not_shown", name=f"{expected['given_name']} {expected['family_name']}", id=expected["national_id"],
                       url=(first.get("protected") or {}).get("url", "-")))


@check(reads=["psc.logins", "psc.provider", "psc-attempt", "psc-shot"])
def check_refusals(ctx: CheckContext, ev: Evaluation) -> None:
    """Each answer the software must refuse (an attack of the stand-in) leaves it logged out."""
    logins = _logins(ctx, ev)
    if logins is None:
        return
    expected = logins["expected"]
    attacks = [a for a in _attempts(ctx, logins) if a["answer"]]
    if not attacks:
        ev.inconclusive(M("check.no_attack"))
        return
    for attempt in attacks:
        rule = "PSC-REFUSE-" + attempt["answer"].upper()
        if not _reached(attempt):
            ev.error(M("check.attack_not_reached", attack=attempt["answer"], error=attempt.get("error", "-")))
            continue
        ev.check(not logged_in(attempt, expected), rule=rule, location=_where(attempt), artefact=_shot(ctx, attempt),
                 message=M("check.accepted", attack=attempt["answer"], url=(attempt.get("protected") or {}).get("url", "-")))


_PLACES = (("navigation", "PSC-TOKEN-01"), ("url", "PSC-TOKEN-01"), ("text", "PSC-TOKEN-02"), ("html", "PSC-TOKEN-02"))


@check(reads=["psc.logins", "psc-attempt"])
def check_tokens(ctx: CheckContext, ev: Evaluation) -> None:
    """No token the stand-in issued in an address, a page, a cookie scripts can read, or storage."""
    logins = _logins(ctx, ev)
    if logins is None:
        return
    attempts = [a for a in _attempts(ctx, logins) if _reached(a)]
    if not attempts:
        ev.inconclusive(M("check.nothing_scanned"))
        return
    ev.judged(len(attempts))
    seen = set()
    for leak in logins["leaks"]:
        place, where = leak["place"], leak["where"]
        kind = where.split(":")[1] if ":" in where else ""
        rule = next((r for p, r in _PLACES if place == p or kind == p), None)
        if rule is None:
            if place.startswith("cookie:") and "(readable by scripts)" not in place:
                continue  # an HttpOnly cookie: scripts cannot read it
            rule = "PSC-TOKEN-03"
        key = (rule, where.split(":")[0], leak["token"])
        if key in seen:
            continue
        seen.add(key)
        ev.add(rule=rule, severity=Severity.ERROR, location=f"psc-attempt/{where}",
               message=M("check.token_leak", token=leak["token"], place=place, digest=leak["digest"]))


@check(reads=["psc.logins", "psc.provider", "psc-attempt"])
def check_logout(ctx: CheckContext, ev: Evaluation) -> None:
    """Logging out ends the session at PSC (RP-initiated logout) and in the software."""
    logins = _logins(ctx, ev)
    if logins is None:
        return
    first = next((a for a in _attempts(ctx, logins) if a["answer"] == ""), None)
    if first is None or not _reached(first) or not logged_in(first, logins["expected"]):
        ev.inconclusive(M("check.logout_no_login"))
        return
    where = _where(first)
    if first.get("logout_error"):
        ev.add(rule="PSC-LOGOUT-01", severity=Severity.ERROR, location=where, message=M("check.no_logout_button"))
        return
    seg = _segments(ctx.json("psc.provider")).get(first["n"]) or {"logout": []}
    ended = any(e["facts"].get("outcome") == "ended" for e in seg["logout"])
    ev.check(ended, rule="PSC-LOGOUT-02", location=where, message=M("check.psc_session_alive"))
    ev.check(not logged_in({"protected": first.get("after_logout")}, logins["expected"]), rule="PSC-LOGOUT-03", location=where,
             message=M("check.local_session_alive", url=(first.get("after_logout") or {}).get("url", "-")))
