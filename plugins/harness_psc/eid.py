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
the verdict, so that a verifier sees what "after inactivity" meant in this run.
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
    """Logged in through PSC, then left alone for the declared delay plus the tolerance."""
    conf = ctx.target.section("eid")
    if "idle_timeout" not in conf:
        raise NotApplicable(M("eid.no_idle_timeout"))
    outputs: dict = {}
    provider, who, means, _ = setup(ctx, outputs, label="eid-configure")
    issued_before = len(provider.issued)
    deadline = float(ctx.target.section("psc").get("deadline", DEADLINE))
    declared, tolerance = int(conf["idle_timeout"]), int(conf.get("tolerance", TOLERANCE))
    args = {**browser_args(ctx, provider, deadline), "attempt": {"n": 0, "answer": "", "professional": who, "means": means},
            "wait": declared + tolerance}
    if args["browser"] is None:
        result, error = None, "no-browser"
    else:
        result, error = browser.run_driver("harness_psc.drive:idle", args, total=deadline * 6 + declared + tolerance)
    p = provider.professionals[who]
    record = {"declared": declared, "tolerance": tolerance, "expected": {"national_id": p.national_id, "given_name": p.given_name,
                                                                         "family_name": p.family_name},
              "error": error or (result or {}).get("error"), "sandbox": (result or {}).get("sandbox")}
    if result:
        login = result.get("login") or {}
        record["login"] = {"steps": login.get("steps", []), "error": login.get("error"),
                           "protected": {k: (login.get("protected") or {}).get(k) for k in ("url", "status", "text")}}
        after = result.get("after_idle")
        if after:
            record["after_idle"] = {k: after.get(k) for k in ("url", "status", "text", "idle_seconds")}
    outputs["eid.idle"] = ctx.record_json(redact(record, provider.issued[issued_before:]), label="eid.idle")  # tokens as digests
    return outputs


@collector(produces=["eid.local"], once_per_run=True)
def collect_local(ctx: CollectContext) -> dict:
    """The software's own login: both factors, the password alone, enrolment by nobody, lockout."""
    login, enrol = ctx.endpoint("eid_login"), ctx.endpoint("eid_enrol")
    if login is None:
        raise NotApplicable(M("eid.no_local_login"))
    conf = ctx.target.section("eid")
    password, totp = ctx.target.secret("eid_password"), ctx.target.secret("eid_totp")
    if not conf.get("username") or not password or not totp:
        raise HarnessError(M("eid.no_account"))
    protected = ctx.endpoint("psc_protected") or ctx.endpoint("eid_protected")
    if protected is None:
        raise HarnessError(M("eid.no_protected"))
    deadline = float(ctx.target.section("psc").get("deadline", DEADLINE))
    args = {"browser": browser.find_browser(), "login_url": login, "enrol_url": enrol, "protected_url": protected, "deadline": deadline,
            "username": str(conf["username"]), "password": password, "totp": totp, "lockout_after": int(conf.get("lockout_after", 5)),
            "loopback_only": ctx.offline, **{k: str(conf.get(k, v)) for k, v in FIELDS.items()}}
    if args["browser"] is None:
        result, error = None, "no-browser"
    else:
        result, error = browser.run_driver("harness_psc.drive:local", args, total=deadline * (12 + args["lockout_after"] * 2))
    from .professionals import BUILTIN

    # the account belongs to a test professional the software names once logged in ([psc] professional)
    p = {b.key: b for b in BUILTIN}.get(str(ctx.target.section("psc").get("professional", "kit-doc0036624")), BUILTIN[0])
    record = {"lockout_after": args["lockout_after"], "enrol_url": enrol, "error": error or (result or {}).get("error"),
              "expected": {"national_id": p.national_id, "given_name": p.given_name, "family_name": p.family_name},
              "cases": {k: v for k, v in (result or {}).items() if k not in ("sandbox", "browser", "error")},
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
    """After the declared delay without activity (and the tolerance), the session is closed."""
    record = _read(ctx, ev, "eid.idle")
    if record is None:
        return
    expected = record["expected"]
    login = record.get("login") or {}
    if login.get("error") or not _logged_in(login.get("protected"), expected):
        ev.inconclusive(M("eid.idle_no_login", error=login.get("error") or "-"))
        return
    after = record.get("after_idle") or {}
    ev.check(not _logged_in(after, expected), rule="EID-IDLE-01", location="eid.idle",
             message=M("eid.idle_alive", seconds=after.get("idle_seconds", "-"), declared=record["declared"], tolerance=record["tolerance"],
                       url=after.get("url", "-")))


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


@check(reads=["eid.local"])
def check_second_factor(ctx: CheckContext, ev: Evaluation) -> None:
    """The software's own login asks for a second factor: the password alone opens nothing."""
    found = _local(ctx, ev)
    if found is None:
        return
    record, expected = found
    case = record["cases"].get("password-only") or {}
    if case.get("error"):
        ev.error(M("eid.case_failed", case="password-only", error=case["error"]))
        return
    ev.check(not _logged_in(case.get("protected"), expected), rule="EID-MFA-01", location="eid.local password-only",
             message=M("eid.password_only", url=(case.get("protected") or {}).get("url", "-")))


@check(reads=["eid.local"])
def check_lockout(ctx: CheckContext, ev: Evaluation) -> None:
    """After the declared number of wrong codes, the account is locked: even the right code fails."""
    found = _local(ctx, ev)
    if found is None:
        return
    record, expected = found
    case = record["cases"].get("lockout") or {}
    if case.get("error"):
        ev.error(M("eid.case_failed", case="lockout", error=case["error"]))
        return
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
