"""Pro Santé Connect end to end: the demo's login through the stand-in in a real browser, each
attack refused, every injected defect caught with its rule, replay offline without logging in
again, and no token or client secret in the bundle."""
import json
import re
import zipfile
from pathlib import Path

import pytest

from harness import browser
from harness_demo.psc_defects import PSC_DEFECTS
from harness_psc.provider import ATTACKS
from tests.harness_run import RunPool, assert_caught, defect_args

needs_browser = pytest.mark.skipif(browser.find_browser() is None, reason="no Chromium (apt-get install chromium-headless-shell)")
PSC_REQUIREMENTS = ["PSC-DMP", "PSC-LOGIN", "PSC-LOGOUT", "PSC-REFUSE", "PSC-TOKENS"]
SECRET = (Path(__file__).resolve().parents[1] / "plugins" / "harness_demo" / "psc-client-secret").read_text().strip()

# each defect of the demo's relying party: the (requirement, rule) that must catch it
EXPECTED = {
    "psc-state-unchecked": {("PSC-REFUSE", "PSC-REFUSE-STATE-MISMATCH")},
    "psc-nonce-unchecked": {("PSC-REFUSE", "PSC-REFUSE-NONCE-MISSING"), ("PSC-REFUSE", "PSC-REFUSE-NONCE-REPLAYED")},
    "psc-signature-unchecked": {("PSC-REFUSE", "PSC-REFUSE-BAD-SIGNATURE"), ("PSC-REFUSE", "PSC-REFUSE-UNKNOWN-KEY")},
    "psc-expiry-unchecked": {("PSC-REFUSE", "PSC-REFUSE-EXPIRED")},
    "psc-audience-unchecked": {("PSC-REFUSE", "PSC-REFUSE-WRONG-AUDIENCE")},
    "psc-issuer-unchecked": {("PSC-REFUSE", "PSC-REFUSE-WRONG-ISSUER")},
    "psc-acr-unchecked": {("PSC-REFUSE", "PSC-REFUSE-WEAKER-ACR")},
    "psc-error-as-login": {("PSC-REFUSE", "PSC-REFUSE-PROVIDER-ERROR")},
    "psc-no-pkce": {("PSC-LOGIN", "PSC-LOGIN-03")},
    "psc-no-acr": {("PSC-LOGIN", "PSC-LOGIN-04")},
    "psc-token-in-url": {("PSC-TOKENS", "PSC-TOKEN-01")},
    "psc-token-in-page": {("PSC-TOKENS", "PSC-TOKEN-02")},
    "psc-cookie-readable": {("PSC-TOKENS", "PSC-TOKEN-03")},
    "psc-logout-local": {("PSC-LOGOUT", "PSC-LOGOUT-02")},
    "psc-dmp-first-professional": {("PSC-DMP", "PSC-DMP-01")},
    "psc-dmp-direct-mode": {("PSC-DMP", "PSC-DMP-02")},
}
# the e-ID rules: each defect, the scenario that judges it and what must catch it
EID = {
    "eid-no-idle-timeout": ("eid-idle-timeout", {("EID-SESSION", "EID-IDLE-01")}),
    "eid-password-only": ("eid-second-factor", {("EID-MFA", "EID-MFA-01")}),
    "eid-no-lockout": ("eid-second-factor", {("EID-MFA", "EID-LOCK-01")}),
    "eid-enrol-anonymous": ("eid-enrolment", {("EID-ENROL", "EID-ENROL-01")}),
}
EID_SCENARIOS = ("--scenario", "eid-idle-timeout", "--scenario", "eid-second-factor", "--scenario", "eid-enrolment")
EID_SECRETS = [(Path(__file__).resolve().parents[1] / "plugins" / "harness_demo" / name).read_text().strip()
               for name in ("eid-password", "eid-totp-secret")]


def artefact(run, label: str):
    with zipfile.ZipFile(run.bundle) as zf:
        for digest, meta in run.manifest["artefacts"].items():
            if meta["label"] == label:
                return json.loads(zf.read(f"artefacts/{digest}"))
    raise AssertionError(f"no {label}")


# Defects that do not interact share a run (each is judged on an attempt or a case of its own);
# a defect that changes what another's rule looks at has a run of its own (the password alone
# leaves no code to get wrong: the lockout is judged alone).
RUN_OF = {
    # each lets one or two attacks through, each attack in its own attempt (all ten in this run)
    **dict.fromkeys(("psc-state-unchecked", "psc-nonce-unchecked", "psc-signature-unchecked", "psc-expiry-unchecked",
                     "psc-audience-unchecked", "psc-issuer-unchecked", "psc-acr-unchecked", "psc-error-as-login"), "refusals"),
    # what the conformant login asks for, its logout, and what its DMP calls say of the professional
    # logged in (judged on two logins of their own)
    **dict.fromkeys(("psc-no-pkce", "psc-no-acr", "psc-logout-local", "psc-dmp-first-professional", "psc-dmp-direct-mode"), "login-defects"),
    # where the tokens end up (and the session left idle: judged on a login of its own)
    **dict.fromkeys(("psc-token-in-url", "psc-token-in-page", "psc-cookie-readable", "eid-no-idle-timeout"), "leaks"),
    "eid-password-only": "eid-password-only",
    **dict.fromkeys(("eid-no-lockout", "eid-enrol-anonymous"), "eid-lockout-enrol"),
}


def _defects_of(run: str) -> list[str]:
    return sorted(d for d, r in RUN_OF.items() if r == run)


def _own_login_only(factory) -> Path:
    """The demo's target without Pro Santé Connect: a software whose only login is its own."""
    import shutil

    demo = Path(__file__).resolve().parents[1] / "plugins" / "harness_demo"
    folder = factory.mktemp("own-login")
    for name in ("eid-password", "eid-totp-secret", "psc-client-secret"):
        shutil.copy(demo / name, folder / name)
    shutil.copytree(demo / "history", folder / "history")
    text = (demo / "target.toml").read_text(encoding="utf-8")
    assert 'psc = "service://psc/"\n' in text
    (folder / "target.toml").write_text(text.replace('psc = "service://psc/"\n', ""), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    with RunPool(tmp_path_factory) as pool:
        own = _own_login_only(tmp_path_factory)
        for name, extra in (("own-login-only", ()), ("own-login-no-idle", ("--defect", "eid-no-idle-timeout"))):
            pool.harness(name, "--scenario", "eid-idle-timeout", "--target", str(own / "target.toml"), "--lang", "en", *extra,
                         cwd=tmp_path_factory.mktemp(name))
        pool.harness("conformant", "--scenario", "psc", "--lang", "en")
        pool.harness("refusals", *defect_args("psc-refusals", _defects_of("refusals")))
        pool.harness("login-defects", *defect_args("psc-login", _defects_of("login-defects")), "--scenario", "psc-logout",
                     "--scenario", "psc-dmp-identity", "--set", "psc.attacks=")  # no attack: the conformant run's
        pool.harness("leaks", *defect_args("psc-tokens", _defects_of("leaks")), "--scenario", "eid-idle-timeout", "--set", "psc.attacks=")
        pool.harness("eid", *EID_SCENARIOS, "--lang", "en")
        pool.harness("at-once-0", "--scenario", "psc-login", "--set", "psc.at_once=0", "--lang", "en")
        pool.harness("eid-password-only", *defect_args("eid-second-factor", ["eid-password-only"]))
        pool.harness("eid-lockout-enrol", *defect_args("eid-second-factor", _defects_of("eid-lockout-enrol")), "--scenario", "eid-enrolment")
        yield pool


def test_every_psc_defect_has_an_expectation():
    assert set(EXPECTED) | set(EID) == set(PSC_DEFECTS) == set(RUN_OF)
    refused = {rule.removeprefix("PSC-REFUSE-").lower() for expected in EXPECTED.values() for _, rule in expected if "REFUSE" in rule}
    assert refused == set(ATTACKS)  # every attack of the stand-in has a defect that lets it through


@needs_browser
@pytest.mark.slow
def test_the_conformant_demo_logs_in_through_psc_and_refuses_every_attack(runs):
    run = runs["conformant"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.requirement_verdicts() == dict.fromkeys(PSC_REQUIREMENTS, "PASS")
    logins = artefact(run, "psc.logins")
    assert logins["leaks"] == [] and logins["sandbox"].startswith("on")
    first = artefact(run, "psc.attempt:01")
    # the harness read who is logged in from the page, as a person does
    assert "KIT DOC0036624" in first["after"]["text"] and "899700366240" in first["after"]["text"]
    assert all(c["httpOnly"] for c in first["after"]["cookies"] if c["name"] == "demo_session")
    for n, attack in enumerate(ATTACKS, 2):
        attempt = artefact(run, f"psc.attempt:{n:02d}")
        assert attempt["answer"] == attack and "Connexion refusée" in attempt["after"]["text"], (attack, attempt["after"]["text"][:200])
    provider = artefact(run, "psc.provider")
    ended = [e for e in provider["exchanges"] if e["facts"].get("endpoint") == "logout"]
    assert [e["facts"]["outcome"] for e in ended] == ["ended"]
    asked = next(e for e in provider["exchanges"] if e["facts"].get("endpoint") == "authorize")["facts"]["requested"]
    assert asked == {"scope": "openid scope_all", "acr_values": "eidas1", "code_challenge_method": "S256", "response_type": "code"}


@needs_browser
@pytest.mark.slow
@pytest.mark.parametrize("defect", sorted(EXPECTED))
def test_each_psc_defect_is_caught_with_its_rule(runs, defect):
    run = assert_caught(runs[RUN_OF[defect]], EXPECTED[defect])
    # a refused answer let through is named on the attempt that sent it (the run sends them all)
    for _, rule in EXPECTED[defect]:
        if rule.startswith("PSC-REFUSE-"):
            answer = rule.removeprefix("PSC-REFUSE-").lower()
            places = {f["location"] for f in run.findings() if f["rule"] == rule and f["severity"] in ("error", "critical")}
            assert places == {f"psc-attempt/{list(ATTACKS).index(answer) + 2:02d}"}, (rule, places)


@needs_browser
@pytest.mark.slow
def test_dmp_calls_made_through_the_login_name_the_professional_logged_in(runs):
    """Two professionals log in in turn; each one's DMP call (its VIHF, recorded by the DMP
    simulator) names that professional, with an indirect authentication."""
    run = runs["conformant"]
    calls = artefact(run, "psc.dmp")["logins"]
    assert [(c["professional"], c["action"]["status"]) for c in calls] == [("kit-doc0036624", 200), ("pharmacien", 200)]
    journal = artefact(run, "dmp.session")["exchanges"]
    for login in calls:
        mine = [e for e in journal if login["action_started"] <= e["at"] <= login["action_ended"]]
        assert [e["action"] for e in mine] == ["urn:ihe:iti:2007:RegistryStoredQuery"], login
    # a software that keeps the first professional's identity is caught on the second login only
    wrong = [f for f in runs["login-defects"].findings() if f["rule"] == "PSC-DMP-01"]
    assert len(wrong) == 1 and "899700366240" in wrong[0]["message"]["en"] and "psc.dmp/02" in wrong[0]["message"]["en"], wrong


@needs_browser
@pytest.mark.slow
def test_no_token_and_no_client_secret_reach_the_bundle(runs):
    """Tokens the stand-in issued are recorded as digests, even where the software leaked
    them; the client secret (a target credential) is scrubbed everywhere."""
    for name in ("conformant", "leaks", "refusals", "login-defects"):
        run = runs[name]
        with zipfile.ZipFile(run.bundle) as zf:
            blob = b"".join(zf.read(n) for n in zf.namelist() if not n.endswith(".png"))
        assert SECRET.encode() not in blob
        assert b"access_token=" not in blob.replace(b"access_token=[jeton", b"")
        assert not re.search(rb"eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{20,}", blob)  # no JWT (an ID token) as such


def test_attempts_side_by_side_are_bounded_with_a_clear_error(runs):
    run = runs["at-once-0"]
    assert run.returncode == 1 and run.requirement_verdicts() == {"PSC-LOGIN": "ERROR"}
    assert "[psc] at_once is 0: between 1 and 16 attempts at once" in run.stdout


@needs_browser
@pytest.mark.slow
def test_replay_reproduces_every_psc_verdict_offline_without_logging_in(runs):
    from harness.cli import main as cli

    assert cli(["verify", "--replay", str(runs["conformant"].bundle)]) == 0
    assert cli(["verify", "--replay", str(runs["refusals"].bundle)]) == 0


@needs_browser
@pytest.mark.slow
def test_the_conformant_demo_follows_the_e_id_rules(runs):
    run = runs["eid"]
    assert run.returncode == 0, run.stdout + run.stderr
    verdicts = run.requirement_verdicts()
    assert {k: verdicts[k] for k in ("EID-SESSION", "EID-MFA", "EID-ENROL")} == dict.fromkeys(("EID-SESSION", "EID-MFA", "EID-ENROL"), "PASS")
    idle = artefact(run, "eid.idle")
    # left alone at least the declared delay and the tolerance, measured on the run's clock
    assert idle["after_idle"]["idle_seconds"] >= idle["declared"] + idle["tolerance"] and "/psc/login" in idle["after_idle"]["url"]
    # the session of its own login too, left alone during the same wait
    assert idle["local"]["after_idle"]["idle_seconds"] >= idle["declared"] + idle["tolerance"]
    assert "KIT DOC0036624" in idle["local"]["login"]["protected"]["text"] and "/psc/login" in idle["local"]["after_idle"]["url"]
    local = artefact(run, "eid.local")["cases"]
    assert local["both-factors"]["asked_code"] and "KIT DOC0036624" in local["both-factors"]["protected"]["text"]
    assert local["password-only"]["asked_code"] and "/psc/login" in local["password-only"]["protected"]["url"]
    assert len(local["lockout"]["wrong_codes"]) == 6 and "Compte verrouillé" in local["lockout"]["after_right_code"]["text"]
    assert local["enrol-anonymous"]["enrol"]["status"] == 401
    with zipfile.ZipFile(run.bundle) as zf:  # the account's password and TOTP secret: target credentials, scrubbed
        blob = b"".join(zf.read(n) for n in zf.namelist() if not n.endswith(".png"))
    assert not any(secret.encode() in blob for secret in EID_SECRETS)


@needs_browser
@pytest.mark.slow
def test_a_software_whose_only_login_is_its_own_is_held_to_the_inactivity_rule(runs):
    run = runs["own-login-only"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.requirement_verdicts() == {"EID-SESSION": "PASS"}
    idle = artefact(run, "eid.idle")
    assert "login" not in idle and idle["local"]["after_idle"]["idle_seconds"] >= idle["declared"] + idle["tolerance"]
    kept = assert_caught(runs["own-login-no-idle"], {("EID-SESSION", "EID-IDLE-01")})
    assert {f["location"] for f in kept.findings() if f["rule"] == "EID-IDLE-01"} == {"eid.idle local"}


@needs_browser
@pytest.mark.slow
@pytest.mark.parametrize("defect", sorted(EID))
def test_each_e_id_defect_is_caught_with_its_rule(runs, defect):
    run = assert_caught(runs[RUN_OF[defect]], EID[defect][1])
    if defect == "eid-no-idle-timeout":  # both sessions kept alive: the one opened through PSC and its own login's
        assert {f["location"] for f in run.findings() if f["rule"] == "EID-IDLE-01"} == {"eid.idle", "eid.idle local"}
