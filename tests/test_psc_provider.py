"""The Pro Santé Connect stand-in as a maintained OpenID Connect client sees it (Authlib's
requests client, joserfc for the JOSE), each attack it can be armed with, and hostile clients."""
from __future__ import annotations

import re
import secrets
import ssl
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import KeySet

from harness_psc.professionals import BUILTIN
from harness_psc.provider import ACR, ATTACKS, PATHS, PscProvider

CALLBACK = "https://cabinet.example.test/psc/callback"
AFTER_LOGOUT = "https://cabinet.example.test/"
SECRET = "client-secret-for-tests"


@pytest.fixture(scope="module")
def psc():
    provider = PscProvider().start()
    provider.register("cabinet", secret=SECRET, redirect_uris=(CALLBACK,), post_logout_redirect_uris=(AFTER_LOGOUT,))
    yield provider
    provider.stop()


_DISCOVERED: dict = {}


def _discovery(psc) -> dict:
    """The stand-in's discovery document (fetched once per stand-in: it does not change)."""
    if psc.base_url not in _DISCOVERED:
        _DISCOVERED[psc.base_url] = requests.get(psc.base_url + PATHS["discovery"].lstrip("/"), verify=str(psc.ca_file), timeout=5).json()
    return _DISCOVERED[psc.base_url]


def _login(psc, professional: str = "kit-doc0036624", means: str = "e-CPS", *, nonce: str | None = "n-1", pkce: bool = True,
           client: str = "cabinet", secret: str = SECRET, answer: str = ""):
    """A client's whole code flow up to the redirect: (session, response of the login form, state, verifier)."""
    disc = _discovery(psc)
    sess = OAuth2Session(client, secret, scope="openid scope_all", redirect_uri=CALLBACK, code_challenge_method="S256" if pkce else None)
    verifier = secrets.token_urlsafe(48) if pkce else None
    extra = {"acr_values": ACR, **({"nonce": nonce} if nonce else {}), **({"code_verifier": verifier} if pkce else {})}
    url, state = sess.create_authorization_url(disc["authorization_endpoint"], **extra)
    page = requests.get(url, verify=str(psc.ca_file), timeout=5)
    assert page.status_code == 200, page.text
    login = re.search(r"name='login' value='([^']+)'", page.text).group(1)
    answer = requests.post(psc.base_url + "auth/login", data={"login": login, "professional": professional, "means": means, "action": "login", "answer": answer},
                           verify=str(psc.ca_file), allow_redirects=False, timeout=5)
    return sess, answer, state, verifier


def _tokens(psc, sess, answer, verifier):
    disc = _discovery(psc)
    return sess.fetch_token(disc["token_endpoint"], authorization_response=answer.headers["Location"], code_verifier=verifier,
                            verify=str(psc.ca_file))


def _keys(psc) -> KeySet:
    return KeySet.import_key_set(requests.get(_discovery(psc)["jwks_uri"], verify=str(psc.ca_file), timeout=5).json())


def test_discovery_keys_tokens_and_userinfo_read_by_a_maintained_client(psc):
    disc = _discovery(psc)
    assert disc["issuer"] == psc.base_url.rstrip("/") + "/auth/realms/esante-wallet"
    assert disc["acr_values_supported"] == ["eidas1"] and "scope_all" in disc["scopes_supported"]
    assert set(disc["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post", "tls_client_auth"}
    wallet = requests.get(psc.base_url + PATHS["wallet_discovery"].lstrip("/"), verify=str(psc.ca_file), timeout=5).json()
    assert wallet == disc  # PSC's own discovery address answers the same
    sess, answer, state, verifier = _login(psc)
    assert answer.status_code == 302 and answer.headers["Location"].startswith(CALLBACK + "?")
    back = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert back["state"] == [state] and len(back["code"][0]) >= 32
    assert "HttpOnly" in answer.headers["Set-Cookie"] and "Secure" in answer.headers["Set-Cookie"]
    token = _tokens(psc, sess, answer, verifier)
    claims = jwt.decode(token["id_token"], _keys(psc), algorithms=["RS256"]).claims
    assert claims["iss"] == disc["issuer"] and claims["aud"] == "cabinet" and claims["nonce"] == "n-1" and claims["acr"] == "eidas1"
    assert claims["preferred_username"] == "899700366240" and claims["exp"] > time.time() and "at_hash" in claims
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": disc["issuer"]}, aud={"essential": True, "value": "cabinet"}).validate(claims)
    info = sess.get(disc["userinfo_endpoint"], verify=str(psc.ca_file))
    assert info.status_code == 200 and info.headers["Content-Type"] == "application/jwt"
    user = jwt.decode(info.text, _keys(psc)).claims
    # the official fixture's professional, in PSC's userinfo shape
    assert user["SubjectNameID"] == "899700366240" and user["sub"] == claims["sub"] and user["otherIds"][0]["origine"] == "RPPS"
    practice = user["SubjectRefPro"]["exercices"][0]
    assert (practice["codeProfession"], practice["codeSavoirFaire"]) == ("10", "SM26")
    assert user["SubjectRole"] == ["10^1.2.250.1.213.1.1.5.5"]


def test_a_code_is_used_once_and_its_replay_revokes_what_it_gave(psc):
    sess, answer, _, verifier = _login(psc)
    token = _tokens(psc, sess, answer, verifier)
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    replay = requests.post(_discovery(psc)["token_endpoint"], auth=("cabinet", SECRET), verify=str(psc.ca_file), timeout=5,
                           data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "code_verifier": verifier})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    info = requests.get(_discovery(psc)["userinfo_endpoint"], headers={"Authorization": f"Bearer {token['access_token']}"},
                        verify=str(psc.ca_file), timeout=5)
    assert info.status_code == 401 and 'error="invalid_token"' in info.headers["WWW-Authenticate"]


def test_pkce_is_checked_when_the_client_announced_it(psc):
    sess, answer, _, _ = _login(psc)
    wrong = requests.post(_discovery(psc)["token_endpoint"], auth=("cabinet", SECRET), verify=str(psc.ca_file), timeout=5,
                          data={"grant_type": "authorization_code", "code": parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0],
                                "redirect_uri": CALLBACK, "code_verifier": secrets.token_urlsafe(48)})
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"


def test_keys_rotate_and_a_token_signed_before_still_verifies(psc):
    sess, answer, _, verifier = _login(psc)
    before = _tokens(psc, sess, answer, verifier)["id_token"]
    old_kid = psc.signing_key.kid
    psc.rotate()
    keys = _keys(psc)
    assert [k.kid for k in keys.keys] == [psc.signing_key.kid, old_kid]
    jwt.decode(before, keys)
    sess, answer, _, verifier = _login(psc)
    after = _tokens(psc, sess, answer, verifier)["id_token"]
    assert jwt.decode(after, keys).claims and after.split(".")[0] != before.split(".")[0]


def test_a_client_authenticates_with_its_certificate_tls_client_auth(psc, tmp_path):
    cert, key = psc.issue_client_certificate("Cabinet Démo (test)")
    other_cert, other_key = psc.issue_client_certificate("Someone else (test)")
    psc.register("cabinet-mtls", redirect_uris=(CALLBACK,), certificate=cert.read_bytes())
    for pem, key_file, expected in ((cert, key, 200), (other_cert, other_key, 401)):
        sess, answer, _, verifier = _login(psc, client="cabinet-mtls", secret="")
        code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
        r = requests.post(_discovery(psc)["token_endpoint"], cert=(str(pem), str(key_file)), verify=str(psc.ca_file), timeout=5,
                          data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "client_id": "cabinet-mtls",
                                "code_verifier": verifier})
        assert r.status_code == expected, r.text
        assert ("id_token" in r.json()) if expected == 200 else r.json()["error"] == "invalid_client"


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_an_armed_login_answers_as_its_attack_says(psc, attack):
    psc.arm(attack)
    sess, answer, state, verifier = _login(psc)
    back = parse_qs(urlsplit(answer.headers["Location"]).query)
    if attack == "provider-error":
        assert back["error"] == ["access_denied"] and back["state"] == [state] and "code" not in back
        return
    if attack == "state-mismatch":
        assert back["state"] != [state]
        return
    code = back["code"][0]
    token = requests.post(_discovery(psc)["token_endpoint"], auth=("cabinet", SECRET), verify=str(psc.ca_file), timeout=5,
                          data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "code_verifier": verifier}).json()
    id_token, keys = token["id_token"], _keys(psc)
    if attack == "bad-signature":
        with pytest.raises(BadSignatureError):
            jwt.decode(id_token, keys)
        return
    if attack == "unknown-key":
        with pytest.raises(JoseError):  # no key of the JWKS has its kid
            jwt.decode(id_token, keys)
        return
    claims = jwt.decode(id_token, keys).claims
    assert {"nonce-missing": lambda: "nonce" not in claims, "nonce-replayed": lambda: claims["nonce"] != "n-1",
            "expired": lambda: claims["exp"] < time.time(), "wrong-audience": lambda: claims["aud"] != "cabinet",
            "wrong-issuer": lambda: claims["iss"] != psc.issuer, "weaker-acr": lambda: claims["acr"] != "eidas1"}[attack]()
    assert psc.armed is None  # one login only


def test_a_tester_arms_an_attack_from_the_login_page(psc):
    sess, answer, _, verifier = _login(psc, answer="wrong-audience")
    claims = jwt.decode(_tokens(psc, sess, answer, verifier)["id_token"], _keys(psc)).claims
    logins = [ex.facts for ex in psc.journal.exchanges if ex.facts.get("endpoint") == "login"]
    assert claims["aud"] == "another-client" and logins[-1]["attack"] == "wrong-audience"
    sess, answer, _, verifier = _login(psc, answer="no-such-attack")  # not an attack: the genuine answer
    assert jwt.decode(_tokens(psc, sess, answer, verifier)["id_token"], _keys(psc)).claims["aud"] == "cabinet"


def test_a_cpe_holder_and_a_means_psc_does_not_accept_are_refused_at_the_login_page(psc):
    cpe = next(p for p in BUILTIN if p.card == "CPE")
    _, answer, _, _ = _login(psc, professional=cpe.key, means="CPS")
    assert answer.status_code == 403 and "Location" not in answer.headers and "CPE" in answer.text
    _, answer, _, _ = _login(psc, means="CPA")
    assert answer.status_code == 403 and "Location" not in answer.headers
    assert psc.journal.exchanges[-1].facts["decision"].startswith("refused")


def test_logout_ends_the_session_at_psc_and_returns_to_a_registered_address(psc):
    sess, answer, _, verifier = _login(psc)
    token = _tokens(psc, sess, answer, verifier)
    disc = _discovery(psc)
    out = requests.get(disc["end_session_endpoint"], params={"id_token_hint": token["id_token"], "post_logout_redirect_uri": AFTER_LOGOUT,
                                                             "state": "s-9"}, verify=str(psc.ca_file), allow_redirects=False, timeout=5)
    assert out.status_code == 302 and out.headers["Location"] == AFTER_LOGOUT + "?state=s-9"
    sid = jwt.decode(token["id_token"], _keys(psc)).claims["sid"]
    assert psc.sessions[sid].ended is not None
    info = sess.get(disc["userinfo_endpoint"], verify=str(psc.ca_file))
    assert info.status_code == 401
    elsewhere = requests.get(disc["end_session_endpoint"], params={"id_token_hint": token["id_token"],
                                                                   "post_logout_redirect_uri": "https://evil.example/"},
                             verify=str(psc.ca_file), allow_redirects=False, timeout=5)
    assert elsewhere.status_code == 200 and "Location" not in elsewhere.headers  # never sent to an address nobody registered


HOSTILE = [
    # (what, request, expected status, expected error or marker)
    ("unknown client", ("GET", "/auth", {"response_type": "code", "client_id": "nobody", "redirect_uri": CALLBACK, "scope": "openid"}), 400, "invalid_client"),
    ("redirect not registered", ("GET", "/auth", {"response_type": "code", "client_id": "cabinet", "redirect_uri": "https://evil.example/cb",
                                                  "scope": "openid", "state": "x"}), 400, "invalid_request"),
    ("unsupported response type", ("GET", "/auth", {"response_type": "token", "client_id": "cabinet", "redirect_uri": CALLBACK, "scope": "openid",
                                                    "state": "x"}), 302, "unsupported_response_type"),
    ("huge parameter", ("GET", "/auth", {"response_type": "code", "client_id": "cabinet", "redirect_uri": CALLBACK, "state": "x" * 5000}), 400,
     "invalid_request"),
    ("bad secret", ("POST", PATHS["token"], {"grant_type": "authorization_code", "code": "x", "redirect_uri": CALLBACK, "client_id": "cabinet",
                                             "client_secret": "wrong"}), 401, "invalid_client"),
    ("unknown grant", ("POST", PATHS["token"], {"grant_type": "password", "username": "a", "password": "b", "client_id": "cabinet",
                                                "client_secret": SECRET}), 400, "unsupported_grant_type"),
    ("invented code", ("POST", PATHS["token"], {"grant_type": "authorization_code", "code": "invented", "redirect_uri": CALLBACK,
                                                "client_id": "cabinet", "client_secret": SECRET}), 400, "invalid_grant"),
    ("no token at userinfo", ("GET", PATHS["userinfo"], {}), 401, "invalid_token"),
    ("logout without hint", ("GET", PATHS["logout"], {}), 400, "id_token_hint"),
    ("login form of nobody", ("POST", PATHS["login"], {"login": "forged", "professional": "kit-doc0036624"}), 400, "expirée"),
]


@pytest.mark.parametrize("what,req,status,marker", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_client_gets_the_error_openid_connect_specifies_and_the_stand_in_keeps_serving(psc, what, req, status, marker):
    method, path, params = req
    before = len(psc.journal.exchanges)
    url = psc.base_url.rstrip("/") + path
    r = (requests.get(url, params=params, verify=str(psc.ca_file), allow_redirects=False, timeout=5) if method == "GET"
         else requests.post(url, data=params, verify=str(psc.ca_file), allow_redirects=False, timeout=5))
    assert r.status_code == status, r.text
    if status == 302:
        assert parse_qs(urlsplit(r.headers["Location"]).query)["error"] == [marker] and r.headers["Location"].startswith(CALLBACK)
    elif r.headers.get("Content-Type", "").startswith("application/json"):
        assert r.json()["error"] == marker
    elif status == 401 and not r.content:
        assert marker in r.headers["WWW-Authenticate"]
    else:
        assert marker in r.text and "Location" not in r.headers  # an error page, never a redirect to an unverified address
    assert len(psc.journal.exchanges) == before + 1  # recorded
    assert requests.get(psc.base_url + PATHS["jwks"].lstrip("/"), verify=str(psc.ca_file), timeout=5).status_code == 200


def test_login_pages_waiting_at_once_are_bounded(psc, monkeypatch):
    import harness_psc.provider as provider

    monkeypatch.setattr(provider, "MAX_LOGINS", len(psc.logins) + 2)
    url = psc.base_url + "auth"
    asked = {"response_type": "code", "client_id": "cabinet", "redirect_uri": CALLBACK, "scope": "openid", "state": "x"}
    statuses = [requests.get(url, params=asked, verify=str(psc.ca_file), timeout=5).status_code for _ in range(4)]
    assert statuses == [200, 200, 503, 503] and "temporarily_unavailable" in psc.journal.exchanges[-1].response.decode()
    psc.logins.clear()
    assert requests.get(url, params=asked, verify=str(psc.ca_file), timeout=5).status_code == 200


def test_garbage_on_the_socket_is_answered_and_the_stand_in_keeps_serving(psc):
    import socket

    ctx = ssl.create_default_context(cafile=str(psc.ca_file))
    with socket.create_connection((psc.host, psc.port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"\x00\xffNOT HTTP AT ALL\r\n\r\n")
        assert b"Error" in tls.recv(200)  # the kit's error answer (as HTTP/0.9: the request line was none)
    assert requests.get(psc.base_url + PATHS["discovery"].lstrip("/"), verify=str(psc.ca_file), timeout=5).status_code == 200
