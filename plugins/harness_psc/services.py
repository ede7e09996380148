"""Through Pro Santé Connect to the national services: once a professional is logged in
through PSC, the software's calls to the DMP carry that login.

Target file::

    [endpoints]
    psc_dmp = "..."       # a page of the software whose action, for the logged-in professional,
                          # calls the DMP (consults the test patient's record, for example)
    dmp = "service://dmp/"

    [psc]
    second_professional = "pharmacien"   # who logs in second (default: the stand-in's next one)
    dmp_authentication_modes = ["INDIRECTE_RENFORCEE", "INDIRECTE"]

Two professionals log in one after the other, each in a browser context of its own, and each
makes the software call the DMP through that page; the DMP simulator records each call with its
VIHF (the DMP plugin's ``dmp.journal``), and the check compares each call's VIHF with the login
it was made for: a software that sends the first professional's identity, or its structure's,
for the second is caught.

Sources: the VIHF the ANS's own code builds after a PSC login — its Subject/NameID is the
userinfo's ``SubjectNameID``, its ``Authentification_Mode`` ``INDIRECTE_RENFORCEE`` and its
``subject-id`` the professional's first and last names (ansforge/DRIM-M_DRIMbox,
``BaseRequest.java``); PSC's VIHF gateway policy writes ``INDIRECTE`` under the attribute name
``Authentification_mode`` (prosanteconnect/generate-VIHF, ``Constants.java``, whose comment
says the value should become ``DELEGUEE``). The two ANS sources differ: the accepted modes are
a setting, both by default, the attribute's name read without regard to case. Not judged: the
role and the activity sector (PSC's ``SubjectRefPro`` against the VIHF's role), whose mapping
neither source fixes the same way.
"""
from __future__ import annotations

from harness import CheckContext, CollectContext, Evaluation, HarnessError, NotApplicable, Severity, browser, catalogue, check, collector
from harness_xds import xua

from .checks import shows
from .collect import browser_args, redact, setup

M = catalogue(__name__)
DEADLINE = 20.0
MODES = ("INDIRECTE_RENFORCEE", "INDIRECTE")
MODE_ATTRIBUTE = "authentification_mode"  # compared without regard to case (see the module's sources)


@collector(produces=["psc.dmp", "psc-dmp-configure.exchange"])
def collect_dmp(ctx: CollectContext) -> dict:
    """Two professionals log in through PSC in turn, each makes the software call the DMP."""
    action = ctx.endpoint("psc_dmp")
    if action is None:
        raise NotApplicable(M("dmp.no_action"))
    if ctx.target.endpoints.get("dmp") is None:
        raise NotApplicable(M("dmp.no_dmp"))
    service = ctx.endpoint_service("dmp") or {}
    dmp = {"url": ctx.endpoint("dmp"), **({"credentials": str(service["credentials"])} if service.get("credentials") else {})}
    outputs: dict = {}
    provider, who, means, _ = setup(ctx, outputs, label="psc-dmp-configure", extra={"dmp": dmp})
    conf = ctx.target.section("psc")
    second = str(conf.get("second_professional") or next((k for k, p in provider.professionals.items() if k != who and p.accepted), ""))
    if second not in provider.professionals or not provider.professionals[second].accepted or second == who:
        raise HarnessError(M("dmp.second_professional", key=second or "-", first=who,
                             known=", ".join(k for k, p in provider.professionals.items() if p.accepted and k != who)))
    modes = [str(m) for m in conf.get("dmp_authentication_modes", list(MODES))]
    deadline = float(conf.get("deadline", DEADLINE))
    logins = [{"n": n, "answer": "", "professional": key, "means": means} for n, key in enumerate((who, second), 1)]
    args = {**browser_args(ctx, provider, deadline), "logins": logins, "action_url": action}
    issued_before = len(provider.issued)
    if args["browser"] is None:
        result, error = None, "no-browser"
    else:
        result, error = browser.run_driver("harness_psc.drive:through", args, total=deadline * 8 * len(logins))
    record = {"action_url": action, "modes": modes, "error": error or (result or {}).get("error"), "sandbox": (result or {}).get("sandbox"),
              "logins": []}
    for n, (attempt, got) in enumerate(zip(logins, (result or {}).get("logins", [])), 1):
        p = provider.professionals[attempt["professional"]]
        login = got.get("login") or {}
        record["logins"].append({
            "n": n, "professional": p.key, "expected": {"national_id": p.national_id, "given_name": p.given_name, "family_name": p.family_name},
            "steps": login.get("steps", []), "login_error": login.get("error"),
            "logged_in": {k: (login.get("protected") or {}).get(k) for k in ("url", "status", "text")},
            "action_started": got.get("action_started"), "action_ended": got.get("action_ended"), "action_error": got.get("action_error"),
            "action": {k: (got.get("action") or {}).get(k) for k in ("url", "status", "text")} if got.get("action") else None})
    outputs["psc.dmp"] = ctx.record_json(redact(record, provider.issued[issued_before:]), label="psc.dmp")  # tokens as digests
    return outputs


def _mode(assertion: xua.Assertion) -> str | None:
    """The VIHF's authentication mode, under either spelling of its name (None: absent)."""
    for name, values in assertion.attributes.items():
        if name.casefold() == MODE_ATTRIBUTE:
            return next((v for v in values if v), "")
    return None


@check(reads=["psc.dmp", "dmp.session", "dmp-vihf"])
def check_dmp(ctx: CheckContext, ev: Evaluation) -> None:
    """Each DMP call made for a professional logged in through PSC names that professional
    (the VIHF's NameID is PSC's SubjectNameID), says an indirect authentication, and, when it
    carries a subject-id, names the same person."""
    if not ctx.has("psc.dmp"):
        ev.error(M("dmp.nothing_recorded"))
        return
    record = ctx.json("psc.dmp")
    if record.get("error") == "no-browser":
        ev.inconclusive(M("dmp.no_browser"))
        return
    if record.get("error"):
        ev.error(M("dmp.browser_failed", error=record["error"]))
        return
    if not ctx.has("dmp.session"):
        ev.error(M("dmp.no_journal"))
        return
    exchanges = ctx.json("dmp.session").get("exchanges", [])
    modes = record.get("modes") or list(MODES)
    if len(record.get("logins", [])) < 2:  # one login proves nothing of "another professional than the one logged in"
        ev.inconclusive(M("dmp.logins_missing", done=len(record.get("logins", []))))
    for login in record.get("logins", []):
        expected, where = login["expected"], f"psc.dmp/{login['n']:02d}"
        if login.get("login_error") or not shows(login.get("logged_in"), expected):
            ev.inconclusive(M("dmp.not_logged_in", who=login["professional"], error=login.get("login_error") or "-"))
            continue
        start, end = login.get("action_started") or "", login.get("action_ended") or ""
        calls = [e for e in exchanges if start and end and start <= str(e.get("at", "")) <= end]
        if not calls:
            action = login.get("action") or {}
            ev.inconclusive(M("dmp.no_call", who=login["professional"], url=record.get("action_url", "-"),
                              status=action.get("status") or login.get("action_error") or "-"))
            continue
        for call in calls:
            key = f"{call['n']:03d}"
            at = f"dmp-vihf/{key}"
            if not ctx.has(at):
                ev.add(rule="PSC-DMP-01", severity=Severity.ERROR, location=f"dmp-request/{key}",
                       message=M("dmp.no_vihf", who=login["professional"], action=call.get("action") or "-"))
                continue
            said = xua.read(ctx.xml(at).getroot())
            ev.check(said.subject == expected["national_id"], rule="PSC-DMP-01", location=f"{at}/Assertion/Subject/NameID",
                     message=M("dmp.other_professional", sent=said.subject or "-", national_id=expected["national_id"],
                               who=f"{expected['given_name']} {expected['family_name']}", login=where))
            mode = _mode(said)
            ev.check(mode in modes, rule="PSC-DMP-02", location=f"{at}/Assertion/AttributeStatement",
                     message=M("dmp.mode", mode=mode if mode is not None else "-", modes=", ".join(modes)))
            subject_id = said.first(xua.SUBJECT_ID)
            if subject_id:
                named = subject_id.casefold()
                ev.check(expected["family_name"].casefold() in named and expected["given_name"].casefold() in named, rule="PSC-DMP-03",
                         location=f"{at}/Assertion/AttributeStatement/Attribute[@Name='{xua.SUBJECT_ID}']",
                         message=M("dmp.subject_id", sent=subject_id, who=f"{expected['given_name']} {expected['family_name']}"))
