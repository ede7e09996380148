"""The demo's login through Pro Santé Connect: an OpenID Connect relying party built on
Authlib's client (``OAuth2Session``) and joserfc, as a vendor would write one.

Conformant: authorization code flow with PKCE (S256) since the provider announces it, the
``eidas1`` level requested, ``state`` and ``nonce`` checked; the ID token verified (its
signature by a key of the provider's JWKS, fetched again for a key it does not know; issuer,
audience, expiry, nonce, ``acr``); the userinfo read as the signed JWT PSC sends; the session
a random identifier in an ``HttpOnly`` cookie, no token ever sent to the browser; logout ends
the local session and the one at PSC (RP-initiated logout with ``id_token_hint``). Each
defect of :mod:`.psc_defects` breaks one of these.
"""
from __future__ import annotations

import html
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

ACR = "eidas1"
SCOPE = "openid scope_all"
TIMEOUT = 10.0  # seconds for each call to the provider
LEEWAY = 30  # seconds of clock skew accepted on exp and iat


@dataclass
class Pending:
    state: str
    nonce: str
    verifier: str
    started: float = field(default_factory=time.time)


@dataclass
class LoggedIn:
    national_id: str
    given_name: str
    family_name: str
    id_token: str
    access_token: str
    last_seen: float = field(default_factory=time.time)


class LoginError(Exception):
    """What the demo tells its user when it refuses a login."""


class PscLogin:
    """The demo's relying party, configured by ``configure`` (the harness names the provider)."""

    def __init__(self, defects: set[str]) -> None:
        self.defects = defects
        self.config: dict | None = None
        self.metadata: dict = {}
        self.keys: KeySet | None = None
        self.pending: dict[str, Pending] = {}  # login cookie: what was sent
        self.sessions: dict[str, LoggedIn] = {}  # session cookie: who
        self.last_identity: LoggedIn | None = None  # psc-error-as-login keeps one
        self.first_identity: LoggedIn | None = None  # psc-dmp-first-professional keeps one
        self.dmp: dict | None = None  # the DMP its logged-in professionals reach ({"url", "credentials"}), when configured
        self._lock = threading.Lock()

    # -- configuration ------------------------------------------------------------------------

    def configure(self, discovery: str, client_id: str, client_secret: str, ca: str, redirect_uri: str, after_logout: str,
                  dmp: dict | None = None) -> dict:
        if dmp is not None:
            self.dmp = {"url": str(dmp["url"]), "credentials": str(dmp.get("credentials", ""))}
        http = self._http(ca)
        self.metadata = http.get(discovery, timeout=TIMEOUT).json()
        self.config = {"client_id": client_id, "client_secret": client_secret, "ca": ca, "redirect_uri": redirect_uri,
                       "after_logout": after_logout, "discovery": discovery}
        self.keys = None
        return {"issuer": self.metadata.get("issuer"), "client_id": client_id}

    @staticmethod
    def _http(ca: str) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # no proxy nor CA bundle from the environment: the provider's CA only
        s.verify = ca
        return s

    def _session(self, **kw) -> OAuth2Session:
        c = self.config
        sess = OAuth2Session(c["client_id"], c["client_secret"], scope=SCOPE, redirect_uri=c["redirect_uri"],
                             token_endpoint_auth_method="client_secret_basic", **kw)
        sess.trust_env = False
        sess.verify = c["ca"]
        return sess

    # -- the flow ---------------------------------------------------------------------------

    def start(self) -> tuple[str, str]:
        """(the provider's authorization URL, the login cookie) for a new login."""
        if self.config is None:
            raise LoginError("Pro Santé Connect n'est pas configuré")
        pending = Pending(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48))
        pkce = "psc-no-pkce" not in self.defects and "S256" in self.metadata.get("code_challenge_methods_supported", [])
        sess = self._session(code_challenge_method="S256" if pkce else None)
        extra = {"nonce": pending.nonce, **({"code_verifier": pending.verifier} if pkce else {})}
        if "psc-no-acr" not in self.defects:
            extra["acr_values"] = ACR
        url, _ = sess.create_authorization_url(self.metadata["authorization_endpoint"], state=pending.state, **extra)
        cookie = secrets.token_urlsafe(24)
        with self._lock:
            self.pending[cookie] = pending
        return url, cookie

    def callback(self, query: dict[str, list[str]], login_cookie: str) -> tuple[str, LoggedIn]:
        """The provider's answer: (session cookie, who) or :class:`LoginError`."""
        with self._lock:
            pending = self.pending.pop(login_cookie, None)
        params = {k: v[0] for k, v in query.items() if v}
        if "error" in params:
            if "psc-error-as-login" in self.defects and self.last_identity is not None:
                return self._open(self.last_identity)  # the defect: the last identity seen stands in
            raise LoginError(f"Pro Santé Connect a refusé la connexion ({params['error']})")
        if pending is None:
            raise LoginError("aucune connexion en cours")
        if params.get("state") != pending.state and "psc-state-unchecked" not in self.defects:
            raise LoginError("état (state) inattendu")
        code = params.get("code")
        if not code:
            raise LoginError("réponse sans code")
        sess = self._session()
        token = sess.fetch_token(self.metadata["token_endpoint"], code=code, verify=self.config["ca"], timeout=TIMEOUT,
                                 **({"code_verifier": pending.verifier} if "psc-no-pkce" not in self.defects else {}))
        claims = self._id_token(token.get("id_token", ""), pending.nonce)
        info = sess.get(self.metadata["userinfo_endpoint"], verify=self.config["ca"], timeout=TIMEOUT)
        if info.status_code != 200:
            raise LoginError(f"userinfo: {info.status_code}")
        user = self._verified(info.text) if info.headers.get("Content-Type", "").startswith("application/jwt") \
            else info.json()
        if user.get("sub") != claims.get("sub"):
            raise LoginError("userinfo d'un autre sujet")
        who = LoggedIn(str(user.get("SubjectNameID") or user.get("preferred_username") or ""), str(user.get("given_name", "")),
                       str(user.get("family_name", "")), token.get("id_token", ""), token.get("access_token", ""))
        self.last_identity = who
        self.first_identity = self.first_identity or who
        return self._open(who)

    def _open(self, who: LoggedIn) -> tuple[str, LoggedIn]:
        cookie = secrets.token_urlsafe(32)
        fresh = LoggedIn(who.national_id, who.given_name, who.family_name, who.id_token, who.access_token)
        with self._lock:
            self.sessions[cookie] = fresh
        return cookie, fresh

    def _jwks(self, refresh: bool = False) -> KeySet:
        if self.keys is None or refresh:
            self.keys = KeySet.import_key_set(self._http(self.config["ca"]).get(self.metadata["jwks_uri"], timeout=TIMEOUT).json())
        return self.keys

    def _verified(self, token: str) -> dict:
        """The claims of a JWT from the provider: signature (JWKS, fetched again for an unknown key)."""
        if "psc-signature-unchecked" in self.defects:
            return _unverified(token)
        try:
            return dict(jwt.decode(token, self._jwks(), algorithms=["RS256"]).claims)
        except JoseError:
            try:
                return dict(jwt.decode(token, self._jwks(refresh=True), algorithms=["RS256"]).claims)
            except (JoseError, ValueError) as exc:
                raise LoginError(f"jeton non vérifié ({type(exc).__name__})") from None
        except ValueError as exc:
            raise LoginError(f"jeton illisible ({exc})") from None

    def _id_token(self, token: str, nonce: str) -> dict:
        """OpenID Connect Core 3.1.3.7: the ID token's checks."""
        claims = self._verified(token)
        now = time.time()
        if claims.get("iss") != self.metadata.get("issuer") and "psc-issuer-unchecked" not in self.defects:
            raise LoginError("émetteur inattendu")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self.config["client_id"] not in audiences and "psc-audience-unchecked" not in self.defects:
            raise LoginError("jeton destiné à un autre client")
        if "psc-expiry-unchecked" not in self.defects and not (isinstance(claims.get("exp"), (int, float)) and claims["exp"] + LEEWAY > now):
            raise LoginError("jeton expiré")
        if claims.get("nonce") != nonce and "psc-nonce-unchecked" not in self.defects:
            raise LoginError("nonce absent ou inattendu")
        if claims.get("acr") != ACR and "psc-acr-unchecked" not in self.defects:
            raise LoginError(f"niveau d'authentification insuffisant ({claims.get('acr')!r})")
        return claims

    # -- the session --------------------------------------------------------------------------

    def who(self, cookie: str, idle: float) -> LoggedIn | None:
        with self._lock:
            found = self.sessions.get(cookie)
            if found is None:
                return None
            if time.time() - found.last_seen > idle:
                self.sessions.pop(cookie, None)
                return None
            found.last_seen = time.time()
            return found

    def rekey(self, cookie: str, key: str) -> str:
        """The session under another cookie value (the defect psc-cookie-readable: the access token)."""
        with self._lock:
            self.sessions[key] = self.sessions.pop(cookie)
        return key

    def logout(self, cookie: str) -> str | None:
        """Ends the local session; the provider's logout address to send the browser to (None: none)."""
        with self._lock:
            found = self.sessions.pop(cookie, None)
        if found is None or self.config is None or "psc-logout-local" in self.defects:
            return None
        end = self.metadata.get("end_session_endpoint")
        if not end:
            return None
        return end + "?" + urlencode({"id_token_hint": found.id_token, "post_logout_redirect_uri": self.config["after_logout"],
                                      "state": secrets.token_urlsafe(12)})


def _unverified(token: str) -> dict:
    """The defect psc-signature-unchecked: the payload read without checking the signature."""
    import base64
    import json

    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise LoginError(f"jeton illisible ({exc})") from None


def page_of(title: str, body: str) -> str:
    return (f"<!doctype html><html lang='fr'><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body><header><h1>Cabinet Démo</h1></header><main>{body}</main></body></html>")
