"""The e-ID rules the ANS's identification referential sets for any means of identification
(minimum requirements recalled by the ENS committee of November 2025, due by 31/12/2026): the
session closes after a period of inactivity; a means other than Pro Santé Connect has two
factors and resists guessing (a lockout after repeated failures); a means is enrolled only by
an authenticated professional. For PSC's session and for the software's own login.

Target file::

    [endpoints]
    eid_login = "..."     # the software's own login page (a password, then a code), if it has one
    eid_enrol = "..."     # where a means of identification is enrolled (POST), if it can be

    [eid]
    idle_timeout = 900    # seconds of inactivity after which the vendor declares a session closed
    tolerance = 30        # seconds the harness adds before it looks (stated in the report)
    username = "..."      # the software's own test account
    lockout_after = 5     # wrong codes after which the vendor declares the account locked
    username_field = "input[name=username]"; password_field = "input[type=password]"
    code_field = "input[autocomplete=one-time-code], input[name=code], input[name=totp]"

    [credentials]
    eid_password = "env:..."   # that account's password
    eid_totp = "env:..."       # its TOTP secret (RFC 6238, base32): the harness types the codes

Measured on the run's own clock: the seconds the session was left alone are recorded with
the verdict, so that a verifier sees what "after inactivity" meant in this run. The session
opened through PSC and the one of the software's own login are left alone during the same wait
(each in a browser context of its own), apart from the lockout case (a software may end the
sessions of an account it locks: that would not be inactivity).
"""
from __future__ import annotations

from harness import CheckContext, CollectContext, Evaluation, HarnessError, NotApplicable, Severity, browser, catalogue, check, collector

from .checks import shows
from .collect import redact, browser_args, setup

M = catalogue(__name__)
DEADLINE = 20.0
TOLERANCE = 30
FIELDS = {"username_field": "input[name=username], input[autocomplete=username]",
          "password_field": "input[type=password]",
          "code_field": "input[autocomplete=one-time-code], input[name=code], input[name=totp], input[name=otp]"}


@collector(produces=["eid.idle", "eid-configure.exchange"], once_per_run=True)
def collect_idle(ctx: CollectContext) -> dict:
    """Logged in through PSC, and with the software's own login when it has one, then left
    alone for the declared delay plus the tolerance (one wait for both sessions)."""
    conf = ctx.target.section("eid")
    if "idle_timeout" not in conf:
        raise NotApplicable(M("eid.no_idle_timeout"))
    local = _local_args(ctx)
    outputs: dict = {}
    declared, tolerance = int(conf["idle_timeout"]), int(conf.get("tolerance", TOLERANCE))
    deadline = float(ctx.target.section("psc").get("deadline", DEADLINE))
    args: dict = {"browser": browser.find_browser(), "deadline": deadline, "loopback_only": ctx.offline, "wait": declared + tolerance}
    provider, issued_before, expected = None, 0, _local_expected(ctx)
    if ctx.endpoint("psc") is not None:
        provider, who, means, _ = setup(ctx, outputs, label="eid-configure")
        issued_before = len(provider.issued)
        args = {**browser_args(ctx, provider, deadline), **args, "attempt": {"n": 0, "answer": "", "professional": who, "means": means}}
        p = provider.professionals[who]
        expected = {"national_id": p.national_id, "given_name": p.given_name, "family_name": p.family_name}
    elif local is None:
        raise NotApplicable(M("eid.no_session"))
    if local is not None:
        args["local"] = local
    if args["browser"] is None:
        result, error = None, "no-browser"
    else:
        result, error = browser.run_driver("harness_psc.drive:idle", args, total=deadline * (6 + (8 if local else 0)) + declared + tolerance)
    record = {"declared": declared, "tolerance": tolerance, "expected": expected, "error": error or (result or {}).get("error"),
              "sandbox": (result or {}).get("sandbox")}
    if result:
        if "login" in result:
            record.update(_idle_record(result))
        if "local" in result:
            record["local"] = {"expected": _local_expected(ctx), **_idle_record(result["local"])}
    tokens = provider.issued[issued_before:] if provider is not None else []
    outputs["eid.idle"] = ctx.record_json(redact(record, tokens), label="eid.idle")  # tokens as digests; the account's secrets: target credentials, scrubbed
    return outputs


def _idle_record(result: dict) -> dict:
    """A login and what the protected page showed after the wait, as recorded."""
    login = result.get("login") or {}
    out = {"login": {"steps": login.get("steps", []), "error": login.get("error"),
                     "protected": {k: (login.get("protected") or {}).get(k) for k in ("url", "status", "text")}}}
    after = result.get("after_idle")
    if after:
        out["after_idle"] = {k: after.get(k) for k in ("url", "status", "text", "idle_seconds")}
    return out


def _local_args(ctx: CollectContext) -> dict | None:
    """What the driver needs to use the software's own login (None: it has none)."""
    login, enrol = ctx.endpoint("eid_login"), ctx.endpoint("eid_enrol")
    if login is None:
        return None
    conf = ctx.target.section("eid")
    password, totp = ctx.target.secret("eid_password"), ctx.target.secret("eid_totp")
    if not conf.get("username") or not password or not totp:
        raise HarnessError(M("eid.no_account"))
    protected = ctx.endpoint("psc_protected") or ctx.endpoint("eid_protected")
    if protected is None:
        raise HarnessError(M("eid.no_protected"))
    return {"browser": browser.find_browser(), "login_url": login, "enrol_url": enrol, "protected_url": protected,
            "deadline": float(ctx.target.section("psc").get("deadline", DEADLINE)), "username": str(conf["username"]), "password": password,
            "totp": totp, "lockout_after": int(conf.get("lockout_after", 5)), "loopback_only": ctx.offline,
            **{k: str(conf.get(k, v)) for k, v in FIELDS.items()}}


def _local_expected(ctx: CollectContext) -> dict:
    """Who the software's own account belongs to: a test professional it names once logged in
    (``[psc] professional``)."""
    from .professionals import BUILTIN

    p = {b.key: b for b in BUILTIN}.get(str(ctx.target.section("psc").get("professional", "kit-doc0036624")), BUILTIN[0])
    return {"national_id": p.national_id, "given_name": p.given_name, "family_name": p.family_name}


@collector(produces=["eid.local"], once_per_run=True)
def collect_local(ctx: CollectContext) -> dict:
    """The software's own login: both factors, the password alone, enrolment by nobody, lockout."""
    args = _local_args(ctx)
    if args is None:
        raise NotApplicable(M("eid.no_local_login"))
    deadline = args["deadline"]
    if args["browser"] is None:
        result, error = None, "no-browser"
    else:
        result, error = browser.run_driver("harness_psc.drive:local", args, total=deadline * (12 + args["lockout_after"] * 2))
    record = {"lockout_after": args["lockout_after"], "enrol_url": args["enrol_url"], "error": error or (result or {}).get("error"),
              "expected": _local_expected(ctx), "cases": {k: v for k, v in (result or {}).items() if k not in ("sandbox", "browser", "error")},
              "sandbox": (result or {}).get("sandbox")}
    return {"eid.local": ctx.record_json(record, label="eid.local")}  # the password and the secret are target credentials: scrubbed


def _logged_in(state: dict | None, expected: dict) -> bool:
    state = state or {}
    return (state.get("status") or 0) < 400 and shows(state, expected)


def _read(ctx: CheckContext, ev: Evaluation, name: str) -> dict | None:
    if not ctx.has(name):
        ev.error(M("eid.nothing_recorded", name=name))
        return None
    record = ctx.json(name)
    if record.get("error") == "no-browser":
        ev.inconclusive(M("eid.no_browser"))
        return None
    if record.get("error"):
        ev.error(M("eid.browser_failed", error=record["error"]))
        return None
    return record


@check(reads=["eid.idle"])
def check_idle(ctx: CheckContext, ev: Evaluation) -> None:
    """After the declared delay without activity (and the tolerance), the session is closed:
    the one opened through PSC, and the one of the software's own login when it has one."""
    record = _read(ctx, ev, "eid.idle")
    if record is None:
        return
    sessions = [(record, "eid.idle", M("eid.kind.psc"))] if "login" in record else []
    if "local" in record:
        sessions.append((record["local"], "eid.idle local", M("eid.kind.local")))
    for session, where, kind in sessions:
        expected = session.get("expected") or record["expected"]
        login = session.get("login") or {}
        if login.get("error") or not _logged_in(login.get("protected"), expected):
            ev.inconclusive(M("eid.idle_no_login", kind=kind, error=login.get("error") or "-"))
            continue
        after = session.get("after_idle") or {}
        ev.check(not _logged_in(after, expected), rule="EID-IDLE-01", location=where,
                 message=M("eid.idle_alive", kind=kind, seconds=after.get("idle_seconds", "-"), declared=record["declared"],
                           tolerance=record["tolerance"], url=after.get("url", "-")))
    if not sessions:
        ev.inconclusive(M("eid.no_session"))


def _local(ctx: CheckContext, ev: Evaluation) -> tuple[dict, dict] | None:
    record = _read(ctx, ev, "eid.local")
    if record is None:
        return None
    expected = record["expected"]
    both = record["cases"].get("both-factors") or {}
    if both.get("error") or not _logged_in(both.get("protected"), expected):
        ev.inconclusive(M("eid.local_no_login", error=both.get("error") or "-"))
        return None
    return record, expected


def _case(ctx: CheckContext, ev: Evaluation, name: str) -> tuple[dict, dict, dict] | None:
    """(the record, who the account belongs to, case ``name``) once the software's own login
    opened a session; None when it cannot be judged (said in ``ev``)."""
    found = _local(ctx, ev)
    if found is None:
        return None
    record, expected = found
    case = record["cases"].get(name) or {}
    if case.get("error"):
        ev.error(M("eid.case_failed", case=name, error=case["error"]))
        return None
    return record, expected, case


@check(reads=["eid.local"])
def check_second_factor(ctx: CheckContext, ev: Evaluation) -> None:
    """The software's own login asks for a second factor: the password alone opens nothing."""
    found = _case(ctx, ev, "password-only")
    if found is None:
        return
    _, expected, case = found
    ev.check(not _logged_in(case.get("protected"), expected), rule="EID-MFA-01", location="eid.local password-only",
             message=M("eid.password_only", url=(case.get("protected") or {}).get("url", "-")))


@check(reads=["eid.local"])
def check_lockout(ctx: CheckContext, ev: Evaluation) -> None:
    """After the declared number of wrong codes, the account is locked: even the right code fails."""
    found = _case(ctx, ev, "lockout")
    if found is None:
        return
    record, expected, case = found
    typed = sum(1 for t in case.get("wrong_codes", []) if t.get("typed"))
    if typed < record["lockout_after"]:
        ev.inconclusive(M("eid.lockout_not_tried", typed=typed, declared=record["lockout_after"]))
        return
    ev.check(not _logged_in(case.get("protected"), expected), rule="EID-LOCK-01", location="eid.local lockout",
             message=M("eid.no_lockout", wrong=typed, declared=record["lockout_after"]))


@check(reads=["eid.local"])
def check_enrolment(ctx: CheckContext, ev: Evaluation) -> None:
    """A means of identification is enrolled only by an authenticated professional."""
    record = _read(ctx, ev, "eid.local")
    if record is None:
        return
    if not record.get("enrol_url"):
        ev.inconclusive(M("eid.no_enrol_endpoint"))
        return
    case = (record["cases"].get("enrol-anonymous") or {})
    if case.get("error"):
        ev.error(M("eid.case_failed", case="enrol-anonymous", error=case["error"]))
        return
    status = (case.get("enrol") or {}).get("status") or 0
    refused = status in (401, 403) or 300 <= status < 400  # refused, or sent to a login page
    ev.check(refused, rule="EID-ENROL-01", location="eid.local enrol-anonymous", severity=Severity.ERROR,
             message=M("eid.enrol_anonymous", status=status))
