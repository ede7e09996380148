"""Hooks of the Pro Santé Connect plugin: the stand-in (a target service), the logins driven
in a real browser, and the checks of what the software did with them."""
from __future__ import annotations

from pathlib import Path

from harness import HarnessError, Service, catalogue, hookimpl

from . import checks, collect, eid, services

M = catalogue(__name__)
SERVICE = "psc"


@hookimpl
def harness_scenario_dirs():
    return [Path(__file__).with_name("scenarios")]


@hookimpl
def harness_target_schema():
    return {"psc": {"client_id": "str", "professional": "str", "means": "str", "attacks": "list[str]", "login_button": "str",
                    "logout_button": "str", "deadline": "int", "at_once": "int",
                    "second_professional": "str", "dmp_authentication_modes": "list[str]"},
            "eid": {"idle_timeout": "int", "tolerance": "int", "username": "str", "lockout_after": "int", "username_field": "str",
                    "password_field": "str", "code_field": "str"},
            f"services.{SERVICE}": {"port": "int"}}


@hookimpl
def harness_collectors():
    return {"psc.logins": collect.collect_logins, "eid.idle": eid.collect_idle, "eid.local": eid.collect_local, "psc.dmp": services.collect_dmp}


@hookimpl
def harness_checks():
    return {"psc.login": checks.check_login, "psc.refusals": checks.check_refusals, "psc.tokens": checks.check_tokens,
            "psc.logout": checks.check_logout, "eid.idle": eid.check_idle, "eid.second_factor": eid.check_second_factor,
            "eid.lockout": eid.check_lockout, "eid.enrolment": eid.check_enrolment, "psc.dmp": services.check_dmp}


@hookimpl
def harness_start_service(name, options, ctx):
    if name != SERVICE:
        return None
    from .provider import PscProvider

    try:
        provider = PscProvider(port=options.get("port", 0)).start()
    except (OSError, ValueError, KeyError) as exc:
        raise HarnessError(M("service.failed", error=str(exc))) from None
    return Service(SERVICE, provider.base_url, provider.stop, {"issuer": provider.issuer})
