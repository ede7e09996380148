"""The Pro Santé Connect stand-in: an OpenID Connect provider on loopback, over HTTPS.

What it plays, and where each part comes from:

- **Endpoints** at the paths of PSC's realm (``/auth/realms/esante-wallet/...``: discovery
  ``.well-known/openid-configuration`` and PSC's ``wallet-openid-configuration``, ``token``,
  ``userinfo``, ``certs``, ``logout``), the authorization endpoint at ``/auth`` as PSC's
  wallet serves it (ANS, keycloak-prosanteconnect ``psc.properties``).
- **OAuth 2.0 and OpenID Connect** by Authlib's server components (``AuthorizationServer``,
  the authorization code grant with the ``OpenIDCode`` extension and PKCE's
  ``CodeChallenge``): request validation, codes used once, client authentication
  (``client_secret_basic``, ``client_secret_post``, and ``tls_client_auth`` (RFC 8705) with
  a certificate of the core PKI), the errors of RFC 6749 and OpenID Connect Core.
- **The authentication level** ``acr`` = ``eidas1``, the one PSC returns (keycloak-prosanteconnect
  ``EidasLevel``, a broker that refuses a token without it); scopes ``openid scope_all``.
- **ID token and userinfo** signed RS256 with a key of the JWKS (``kid``); the userinfo as a
  signed JWT (``application/jwt``), as PSC answers it; its claims those of
  :mod:`.professionals`. Keys rotate (:meth:`PscProvider.rotate`): the JWKS keeps the
  previous key while tokens it signed may still be checked.
- **Logout** (``end_session_endpoint``): the session at PSC ends for ``id_token_hint``'s
  session, with a redirect to a registered ``post_logout_redirect_uri``.
- **The login page** a person or the harness's browser uses: a list of test professionals
  and a means of identification; a CPE or CPA holder is refused as PSC refuses them.

A login may be **armed** with one attack (:data:`ATTACKS`), by :meth:`PscProvider.arm` or by
whoever logs in (the login page's "Réponse" list: a tester tries each by hand, the harness's
browser picks it): the answer the software gets is
then wrong the way the attack says (a state that is not the one it sent, an ID token badly
signed, expired, for another audience...), and the software must refuse it. Every exchange is
in the journal, with what the stand-in decided (``facts``): tokens themselves are recorded
by the collectors only as digests.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from authlib.oauth2 import AuthorizationServer, OAuth2Error
from authlib.oauth2.rfc6749 import (AuthorizationCodeMixin, ClientMixin, JsonRequest, OAuth2Payload, OAuth2Request,
                                    grants)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from harness import ConnectionBounds, HttpService, Request, Response, TestPKI, pki

from .professionals import BUILTIN, MEANS, Professional

REALM = "/auth/realms/esante-wallet"
PATHS = {"discovery": REALM + "/.well-known/openid-configuration", "wallet_discovery": REALM + "/.well-known/wallet-openid-configuration",
         "authorize": "/auth", "login": "/auth/login", "token": REALM + "/protocol/openid-connect/token",
         "userinfo": REALM + "/protocol/openid-connect/userinfo", "jwks": REALM + "/protocol/openid-connect/certs",
         "logout": REALM + "/protocol/openid-connect/logout"}
ACR = "eidas1"
SCOPES = ("openid", "scope_all")
ALG = "RS256"
CODE_LIFETIME = 60  # seconds an authorization code may wait (RFC 6749 4.1.2: short; at most 10 minutes)
TOKEN_LIFETIME = 120  # seconds an access token and an ID token are valid
LOGIN_WAIT = 600  # seconds a login page may wait for its form
MAX_LOGINS = 1000  # login pages waiting for their form at once (a client asking for pages in a loop gets none more)
MAX_PARAMETER = 2048  # characters of one request parameter
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "tls_client_auth")

# what an armed login does to the answer (the software must refuse each)
ATTACKS = {
    "state-mismatch": "the redirect carries a state the software did not send",
    "nonce-missing": "the ID token has no nonce",
    "nonce-replayed": "the ID token carries the nonce of an earlier login",
    "bad-signature": "the ID token's signature does not verify",
    "unknown-key": "the ID token is signed by a key the JWKS does not hold",
    "expired": "the ID token expired before it was issued",
    "wrong-audience": "the ID token is for another client",
    "wrong-issuer": "the ID token comes from another issuer",
    "weaker-acr": "the ID token's acr is weaker than the one requested",
    "provider-error": "the provider answers the authorization with an error",
}
WEAKER_ACR = "eidas0"  # a level under eidas1 (none exists at PSC: any other value is weaker, a setting)


@dataclass
class Client(ClientMixin):
    client_id: str
    secret: str = ""
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    auth_methods: tuple[str, ...] = ("client_secret_basic", "client_secret_post")
    certificate_sha256: str = ""  # tls_client_auth: the SHA-256 of the client's certificate (DER, hex)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0] if self.redirect_uris else ""

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match (OpenID Connect Core 3.1.2.1)

    def check_client_secret(self, client_secret: str) -> bool:
        return bool(self.secret) and secrets.compare_digest(self.secret.encode(), (client_secret or "").encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in self.auth_methods

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    professional: Professional
    session: str
    means: str
    nonce: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    issued: float = field(default_factory=time.time)
    attack: str | None = None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return int(self.issued)

    def get_acr(self) -> str:
        return ACR

    def get_amr(self) -> None:
        return None

    def is_expired(self) -> bool:
        return time.time() > self.issued + CODE_LIFETIME


@dataclass
class Session:
    """A login at PSC (its single sign-on session)."""

    sid: str
    professional: Professional
    means: str
    started: float
    ended: float | None = None
    ended_by: str = ""


class _Payload(OAuth2Payload):
    def __init__(self, values: dict[str, list[str]]) -> None:
        self._values = values

    @property
    def data(self) -> dict[str, str]:
        return {k: v[0] for k, v in self._values.items() if v}

    @property
    def datalist(self):
        from collections import defaultdict

        return defaultdict(list, {k: list(v) for k, v in self._values.items()})


class _OAuthRequest(OAuth2Request):
    """An Authlib request made from the services kit's :class:`~harness.Request` (or from a
    login's stored authorization request)."""

    def __init__(self, method: str, uri: str, headers: dict[str, str], query: dict[str, list[str]], form: dict[str, list[str]],
                 peer_certificate: bytes | None = None) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self._query, self._form = query, form
        self.payload = _Payload({**query, **form})
        self.peer_certificate = peer_certificate

    @property
    def args(self) -> dict[str, str]:
        return {k: v[0] for k, v in self._query.items() if v}

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in self._form.items() if v}


class _CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        provider: PscProvider = self.server.provider
        data = request.payload.data
        login = request.user  # (professional, session, means, attack)
        provider.codes[code] = Code(code, request.client.get_client_id(), data.get("redirect_uri", ""), request.payload.scope or "",
                                    login.professional, login.session, login.means, nonce=data.get("nonce"),
                                    code_challenge=data.get("code_challenge"), code_challenge_method=data.get("code_challenge_method"),
                                    attack=login.attack)

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        found = self.server.provider.codes.get(code)
        if found is None:
            self.server.provider.replayed_code(code)
            return None
        if found.client_id == client.get_client_id() and not found.is_expired():
            return found
        return None

    def delete_authorization_code(self, authorization_code: Code) -> None:
        provider: PscProvider = self.server.provider
        provider.codes.pop(authorization_code.code, None)
        provider.used_codes[authorization_code.code] = authorization_code

    def authenticate_user(self, authorization_code: Code) -> Code:
        return authorization_code  # the code carries who logged in


class _OpenIDCode(OpenIDCode):
    def __init__(self, provider: "PscProvider") -> None:
        super().__init__(require_nonce=False)  # a missing nonce is the software's to notice (and a rule of ours)
        self.provider = provider

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return False  # nonces are the client's to check; the stand-in only carries them

    def resolve_client_private_key(self, client: Client) -> KeySet:
        return KeySet([self.provider.signing_key])

    def get_client_algorithm(self, client: Client) -> str:
        return ALG

    def get_encode_header(self, client: Client) -> dict:
        return {"alg": ALG, "kid": self.provider.signing_key.kid, "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict:
        now = int(time.time())
        return {"iss": self.provider.issuer, "aud": client.get_client_id(), "iat": now, "exp": now + TOKEN_LIFETIME}

    def generate_user_info(self, user: Code, scope: str) -> dict:
        who = user.professional
        return {"sub": who.sub, "idp": "PSC", "sid": user.session, "preferred_username": who.national_id,
                "given_name": who.given_name, "family_name": who.family_name}

    def encode_id_token(self, token: dict, request: OAuth2Request) -> str:
        code: Code = request.authorization_code
        encoded = super().encode_id_token(token, request)
        return self.provider.attacked_id_token(encoded, code)


class _Server(AuthorizationServer):
    def __init__(self, provider: "PscProvider") -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.provider = provider
        self.register_token_generator("default", BearerTokenGenerator(lambda *a, **k: secrets.token_urlsafe(32),
                                                                      expires_generator=lambda client, grant_type: TOKEN_LIFETIME))
        self.register_client_auth_method("tls_client_auth", self._tls_client_auth)
        self.register_grant(_CodeGrant, [_OpenIDCode(provider), CodeChallenge(required=False)])

    @staticmethod
    def _tls_client_auth(query_client, request: _OAuthRequest) -> Client | None:
        """RFC 8705 2.1: the client's certificate, from the TLS handshake, is the registered one."""
        client = query_client(request.payload.client_id)
        der = getattr(request, "peer_certificate", None)
        if client is None or der is None or not client.certificate_sha256:
            return None
        if secrets.compare_digest(hashlib.sha256(der).hexdigest(), client.certificate_sha256.lower()):
            return client
        return None

    def query_client(self, client_id: str) -> Client | None:
        return self.provider.clients.get(client_id or "")

    def save_token(self, token: dict, request: OAuth2Request) -> None:
        code: Code = request.authorization_code
        self.provider.tokens[token["access_token"]] = (code, time.time() + TOKEN_LIFETIME)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request if isinstance(request, OAuth2Request) else self.provider.oauth_request(request)

    def create_json_request(self, request: Any) -> JsonRequest:
        raise NotImplementedError  # no JSON endpoint (no dynamic registration)

    def handle_response(self, status: int, body: Any, headers: list | dict) -> Response:
        headers = dict(headers or [])
        if isinstance(body, (dict, list)):
            data, ctype = json.dumps(body).encode(), headers.pop("Content-Type", "application/json")
        else:
            data, ctype = str(body or "").encode(), headers.pop("Content-Type", "text/plain; charset=utf-8")
        headers.setdefault("Cache-Control", "no-store")
        return Response(status, data, ctype, headers=headers)


@dataclass
class _Login:
    professional: Professional
    session: str
    means: str
    attack: str | None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class PscProvider(HttpService):
    """The stand-in; ``register`` a client before its software logs in, ``arm`` an attack for
    the next login, ``rotate`` the signing key."""

    name = "psc"
    server_header = "HarnessPSC/1"
    bounds = ConnectionBounds(max_connections=32, deadline=120.0, idle=15.0)
    max_request = 64 * 1024
    request_deadline = 15.0

    def __init__(self, *, port: int = 0, professionals: tuple[Professional, ...] = BUILTIN, credentials: Path | None = None) -> None:
        self.pki = TestPKI("Harness PSC", org="Harness Pro Santé Connect (test)").start()
        self._own_folder = credentials is None
        self.credentials = Path(tempfile.mkdtemp(prefix="harness-psc-")) if credentials is None else credentials
        self.credentials.mkdir(parents=True, exist_ok=True)
        (self.credentials / "ca.pem").write_bytes(self.pki.anchors_pem())
        self.pki.issue("127.0.0.1", usage="server").write(self.credentials, "server")
        self.professionals = {p.key: p for p in professionals}
        self.clients: dict[str, Client] = {}
        self.codes: dict[str, Code] = {}
        self.used_codes: dict[str, Code] = {}
        self.tokens: dict[str, tuple[Code, float]] = {}
        self.sessions: dict[str, Session] = {}
        self.logins: dict[str, tuple[str, float]] = {}  # login page id: (authorization request query, when)
        self.nonces: list[str] = []  # nonces of earlier logins (a replayed one is drawn from them)
        self.armed: str | None = None
        self.revoked_on_replay: list[str] = []
        self.issued: list[tuple[str, str]] = []  # (kind, value) of every token given: looked for where none may be, never recorded
        self._lock = threading.Lock()
        self.keys: list[RSAKey] = []
        self.rotate()
        self._stranger = self._new_key("unknown")  # signs what no JWKS holds
        self.server_auth = _Server(self)
        super().__init__(port=port, tls=self._context())
        self.issuer = self.base_url.rstrip("/") + REALM

    # -- keys -------------------------------------------------------------------------------

    @staticmethod
    def _new_key(prefix: str) -> RSAKey:
        key = RSAKey.import_key(pki.key_pem(pki.new_key()))
        return RSAKey.import_key(key.as_dict(private=True), {"kid": f"{prefix}-{key.thumbprint()[:16]}", "use": "sig", "alg": ALG})

    def rotate(self) -> RSAKey:
        """A new signing key; the JWKS keeps the one before it (tokens it signed still verify)."""
        with self._lock:
            self.keys = [self._new_key("psc"), *self.keys[:1]]
            return self.keys[0]

    @property
    def signing_key(self) -> RSAKey:
        return self.keys[0]

    def jwks(self) -> dict:
        return {"keys": [k.as_dict(private=False) for k in self.keys]}

    # -- set-up -----------------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.credentials / "server.pem", self.credentials / "server.key")
        ctx.verify_mode = ssl.CERT_OPTIONAL  # a browser has none; a client authenticating by certificate does
        ctx.load_verify_locations(cadata=self.pki.anchors_pem().decode())
        return ctx

    def register(self, client_id: str, *, secret: str = "", redirect_uris: tuple[str, ...] = (), post_logout_redirect_uris: tuple[str, ...] = (),
                 auth_methods: tuple[str, ...] | None = None, certificate: bytes | None = None) -> Client:
        """A client of PSC (what its service registration holds); ``certificate`` (PEM or DER)
        for ``tls_client_auth``."""
        sha = ""
        if certificate:
            cert = x509.load_pem_x509_certificate(certificate) if certificate.lstrip().startswith(b"-----") else x509.load_der_x509_certificate(certificate)
            sha = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        methods = auth_methods or tuple(m for m in AUTH_METHODS if (m != "tls_client_auth" or sha) and (m == "tls_client_auth" or secret))
        client = Client(client_id, secret, tuple(redirect_uris), tuple(post_logout_redirect_uris), methods, sha)
        self.clients[client_id] = client
        return client

    def issue_client_certificate(self, cn: str) -> tuple[Path, Path]:
        """A client certificate of the stand-in's PKI (for ``tls_client_auth``): (cert, key) files."""
        stem = "client-" + hashlib.sha256(cn.encode()).hexdigest()[:8]
        return self.pki.issue(cn, usage="client").write(self.credentials, stem)

    @property
    def ca_file(self) -> Path:
        return self.credentials / "ca.pem"

    @property
    def spki_sha256(self) -> str:
        """The base64 SHA-256 of the server certificate's public key (what a browser pins)."""
        cert = x509.load_pem_x509_certificate((self.credentials / "server.pem").read_bytes())
        der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(hashlib.sha256(der).digest()).decode()

    def arm(self, attack: str | None) -> None:
        """The next login answers as ``attack`` says (None: as PSC does)."""
        if attack is not None and attack not in ATTACKS:
            raise ValueError(f"unknown attack {attack!r}; known: {', '.join(ATTACKS)}")
        self.armed = attack

    def discovery(self) -> dict:
        base = self.base_url.rstrip("/")
        return {"issuer": self.issuer, "authorization_endpoint": base + PATHS["authorize"], "token_endpoint": base + PATHS["token"],
                "userinfo_endpoint": base + PATHS["userinfo"], "jwks_uri": base + PATHS["jwks"], "end_session_endpoint": base + PATHS["logout"],
                "response_types_supported": ["code"], "grant_types_supported": ["authorization_code"],
                "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": [ALG],
                "userinfo_signing_alg_values_supported": [ALG], "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
                "scopes_supported": list(SCOPES), "acr_values_supported": [ACR], "claims_parameter_supported": False,
                "code_challenge_methods_supported": ["S256", "plain"], "response_modes_supported": ["query"],
                "tls_client_certificate_bound_access_tokens": False}

    # -- requests ---------------------------------------------------------------------------

    def oauth_request(self, request: Request) -> _OAuthRequest:
        headers = {k: v for k, v in request.headers.items()}
        return _OAuthRequest(request.method, self.base_url.rstrip("/") + request.target, headers, request.query, self._form(request),
                             request.peer_certificate)

    def handle(self, request: Request) -> Response:
        path = request.path
        facts = request.exchange.facts
        too_long = next((k for k, v in {**request.query, **self._form(request)}.items() for x in v if len(x) > MAX_PARAMETER or len(k) > 256), None)
        if too_long is not None:
            facts["refused"] = f"parameter {too_long[:40]!r} over {MAX_PARAMETER} characters"
            return self._oauth_error(400, "invalid_request", "parameter too long")
        route = {PATHS["discovery"]: self._discovery, PATHS["wallet_discovery"]: self._discovery, PATHS["jwks"]: self._jwks,
                 PATHS["authorize"]: self._authorize, PATHS["login"]: self._login, PATHS["token"]: self._token,
                 PATHS["userinfo"]: self._userinfo, PATHS["logout"]: self._logout}.get(path)
        if route is None:
            return Response(404, b"not found\n")
        facts["endpoint"] = next(k for k, v in PATHS.items() if v == path)
        return route(request)

    @staticmethod
    def _form(request: Request) -> dict[str, list[str]]:
        if request.header("Content-Type").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return {}
        return parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)

    @staticmethod
    def _oauth_error(status: int, error: str, description: str, headers: dict | None = None) -> Response:
        return Response.json(status, {"error": error, "error_description": description}, headers={"Cache-Control": "no-store", **(headers or {})})

    def _discovery(self, request: Request) -> Response:
        return Response.json(200, self.discovery())

    def _jwks(self, request: Request) -> Response:
        return Response.json(200, self.jwks(), "application/jwk-set+json")

    def _authorize(self, request: Request) -> Response:
        facts = request.exchange.facts
        if request.method not in ("GET", "POST"):
            return Response(405, b"method not allowed\n")
        oauth = self.oauth_request(request)
        try:
            self.server_auth.get_consent_grant(oauth)
        except OAuth2Error as error:
            facts["error"] = error.error
            if getattr(error, "redirect_uri", None):  # the client and its redirect are known: the error goes back to it
                return self.server_auth.handle_error_response(oauth, error)
            return self._page(400, "Requête refusée / Request refused", f"<p class='error'>{html.escape(error.error)}: "
                              f"{html.escape(error.description or '')}</p>")
        facts["client_id"] = oauth.payload.client_id
        facts["requested"] = {k: oauth.payload.data.get(k) for k in ("scope", "acr_values", "code_challenge_method", "response_type")}
        facts["nonce_sent"] = bool(oauth.payload.data.get("nonce"))
        facts["state_sent"] = bool(oauth.payload.state)
        login = secrets.token_urlsafe(24)
        facts["login_page"] = hashlib.sha256(login.encode()).hexdigest()[:16]
        with self._lock:
            self._expire_logins()
            if len(self.logins) >= MAX_LOGINS:
                facts["refused"] = f"{MAX_LOGINS} login pages already waiting"
                return self._page(503, "Service momentanément indisponible / Temporarily unavailable",
                                  "<p class='error'>temporarily_unavailable</p>")
            self.logins[login] = (urlsplit(request.target).query if request.method == "GET" else request.body.decode("utf-8", "replace"),
                                  time.time())
        return self._page(200, "Pro Santé Connect — connexion de test / test login", self._login_form(login))

    def _expire_logins(self) -> None:
        now = time.time()
        for key in [k for k, (_, at) in self.logins.items() if now - at > LOGIN_WAIT]:
            self.logins.pop(key, None)

    def _login_form(self, login: str) -> str:
        rows = "".join(
            f"<li><label><input type='radio' name='professional' value='{html.escape(p.key)}'{' checked' if n == 0 else ''}> "
            f"<span class='name'>{html.escape(p.display())}</span> — {html.escape(p.national_id)} ({html.escape(p.origin or p.card)})"
            f"{' — carte ' + html.escape(p.card) if not p.accepted else ''}</label></li>"
            for n, p in enumerate(self.professionals.values()))
        means = "".join(f"<option value='{m}'>{m}</option>" for m in (*MEANS, "CPE", "CPA"))
        answers = "<option value=''>conforme / as PSC answers</option>" + "".join(
            f"<option value='{a}'>{html.escape(a)} — {html.escape(why)}</option>" for a, why in ATTACKS.items())
        return (f"<form method='post' action='{PATHS['login']}'><input type='hidden' name='login' value='{login}'>"
                f"<fieldset><legend>Professionnel de test / Test professional</legend><ul>{rows}</ul></fieldset>"
                f"<label>Moyen d'identification / Means <select name='means'>{means}</select></label> "
                f"<label>Réponse / Answer <select name='answer'>{answers}</select></label> "
                f"<button type='submit' name='action' value='login'>Se connecter</button> "
                f"<button type='submit' name='action' value='cancel'>Annuler</button></form>")

    def _login(self, request: Request) -> Response:
        facts = request.exchange.facts
        if request.method != "POST":
            return Response(405, b"POST only\n")
        form = {k: v[0] for k, v in self._form(request).items() if v}
        facts["login_page"] = hashlib.sha256(form.get("login", "").encode()).hexdigest()[:16]
        if form.get("attempt", "").isdigit():  # the harness's browser numbers its attempts
            facts["attempt"] = int(form["attempt"])
        with self._lock:
            stored = self.logins.pop(form.get("login", ""), None)
        if stored is None:
            facts["refused"] = "unknown or expired login page"
            return self._page(400, "Connexion expirée / Login expired", "<p class='error'>Page de connexion inconnue ou expirée.</p>")
        query = parse_qs(stored[0], keep_blank_values=True)
        oauth = _OAuthRequest("GET", self.base_url.rstrip("/") + PATHS["authorize"] + "?" + stored[0], {}, query, {})
        grant = self.server_auth.get_consent_grant(oauth)  # validated when the page was served
        who = self.professionals.get(form.get("professional", ""))
        means = form.get("means", "e-CPS")
        if form.get("action") == "cancel" or who is None:
            facts["decision"] = "cancelled"
            return self.server_auth.create_authorization_response(oauth, grant_user=None, grant=grant)
        if not who.accepted or means not in MEANS or means not in who.means:
            facts["decision"] = f"refused: card {who.card}, means {means}"
            return self._page(403, "Connexion refusée / Login refused",
                              f"<p class='error'>Pro Santé Connect n'accepte pas ce moyen d'identification ({html.escape(means)}, "
                              f"carte {html.escape(who.card)}).</p>")
        attack, self.armed = self.armed or (form.get("answer") if form.get("answer") in ATTACKS else None), None
        facts["professional"], facts["means"] = who.national_id, means
        if attack:
            facts["attack"] = attack
        if attack == "provider-error":
            return self._redirect_with(grant.validate_authorization_request(), {"error": "access_denied",
                                       "error_description": "authentification refusée (test)", "state": oauth.payload.state})
        session = Session(secrets.token_urlsafe(16), who, means, time.time())
        with self._lock:
            self.sessions[session.sid] = session
            if oauth.payload.data.get("nonce"):
                self.nonces.append(oauth.payload.data["nonce"])
        response = self.server_auth.create_authorization_response(oauth, grant_user=_Login(who, session.sid, means, attack), grant=grant)
        if attack == "state-mismatch" and "Location" in response.headers:
            response.headers["Location"] = self._replace_param(response.headers["Location"], "state", secrets.token_urlsafe(12))
        facts["session"] = session.sid
        response.headers["Set-Cookie"] = f"PSC_SESSION={session.sid}; Path=/; Secure; HttpOnly; SameSite=Lax"
        return response

    @staticmethod
    def _replace_param(url: str, name: str, value: str) -> str:
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qs(parts.query, keep_blank_values=True).items()]
        pairs = [(k, value if k == name else v[0]) for k, v in query]
        return urlunsplit(parts._replace(query=urlencode(pairs)))

    @staticmethod
    def _redirect_with(redirect_uri: str, params: dict) -> Response:
        sep = "&" if urlsplit(redirect_uri).query else "?"
        return Response(302, b"", headers={"Location": redirect_uri + sep + urlencode({k: v for k, v in params.items() if v}),
                                           "Cache-Control": "no-store"})

    def _token(self, request: Request) -> Response:
        facts = request.exchange.facts
        if request.method != "POST":
            return self._oauth_error(405, "invalid_request", "POST only")
        response = self.server_auth.create_token_response(self.oauth_request(request))
        try:
            answer = json.loads(response.body)
        except ValueError:
            answer = {}
        facts["outcome"] = answer.get("error", "issued" if "access_token" in answer else str(response.status))
        if answer.get("access_token"):
            self.issued.append(("access", answer["access_token"]))
        if answer.get("id_token"):
            self.issued.append(("id", answer["id_token"]))
            facts["id_token_sha256"] = hashlib.sha256(answer["id_token"].encode()).hexdigest()
            facts["id_token_claims"] = self.claims_of(answer["id_token"])
        return response

    def replayed_code(self, code: str) -> None:
        """RFC 6749 4.1.2: a code used twice is refused, and the tokens issued from it revoked."""
        used = self.used_codes.get(code)
        if used is None:
            return
        with self._lock:
            for token in [t for t, (c, _) in self.tokens.items() if c.code == code]:
                self.tokens.pop(token, None)
                self.revoked_on_replay.append(hashlib.sha256(token.encode()).hexdigest())

    def _userinfo(self, request: Request) -> Response:
        facts = request.exchange.facts
        auth = request.header("Authorization")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        found = self.tokens.get(token)
        if not token or found is None or found[1] < time.time():
            facts["outcome"] = "invalid_token"
            return Response(401, b"", headers={"WWW-Authenticate": 'Bearer error="invalid_token"', "Cache-Control": "no-store"})
        code, _ = found
        session = self.sessions.get(code.session)
        if session is not None and session.ended is not None:
            facts["outcome"] = "session_ended"
            return Response(401, b"", headers={"WWW-Authenticate": 'Bearer error="invalid_token", error_description="session ended"'})
        now = int(time.time())
        claims = {**code.professional.userinfo(), "iss": self.issuer, "aud": code.client_id, "iat": now}
        facts["outcome"], facts["professional"], facts["session"] = "answered", code.professional.national_id, code.session
        signed = jwt.encode({"alg": ALG, "kid": self.signing_key.kid, "typ": "JWT"}, claims, self.signing_key)
        return Response(200, signed.encode(), "application/jwt", headers={"Cache-Control": "no-store"})

    def _logout(self, request: Request) -> Response:
        facts = request.exchange.facts
        params = {k: v[0] for k, v in {**request.query, **self._form(request)}.items() if v}
        hint = params.get("id_token_hint", "")
        claims = self.verify_own(hint) if hint else None
        if claims is None:
            facts["outcome"] = "no valid id_token_hint"
            return self._page(400, "Déconnexion refusée / Logout refused", "<p class='error'>id_token_hint absent ou invalide.</p>")
        session = self.sessions.get(str(claims.get("sid", "")))
        if session is not None and session.ended is None:
            session.ended, session.ended_by = time.time(), "end_session_endpoint"
        facts["outcome"], facts["session"] = "ended", claims.get("sid")
        target = params.get("post_logout_redirect_uri")
        client = self.clients.get(str(claims.get("aud", "")))
        if target and client is not None and target in client.post_logout_redirect_uris:
            return self._redirect_with(target, {"state": params.get("state")})
        return self._page(200, "Déconnecté / Logged out", "<p>Vous êtes déconnecté de Pro Santé Connect.</p>")

    @staticmethod
    def claims_of(token: str) -> dict:
        """The payload of a JWT as written (no check): what the software was given."""
        try:
            payload = token.split(".")[1]
            return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            return {}

    def verify_own(self, token: str) -> dict | None:
        """The claims of an ID token this stand-in signed with a key of its JWKS (expired or not), else None."""
        try:
            return dict(jwt.decode(token, KeySet(self.keys), algorithms=[ALG]).claims)
        except Exception:  # joserfc raises its own errors and ValueError for what is no JWT
            return None

    # -- attacks ----------------------------------------------------------------------------

    def attacked_id_token(self, encoded: str, code: Code) -> str:
        """The ID token as the armed attack makes it (the genuine one when none)."""
        attack = code.attack
        if attack is None or attack in ("state-mismatch", "provider-error"):
            return encoded
        header_b64, payload_b64, signature = encoded.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4)))
        key = self.signing_key
        if attack == "bad-signature":
            raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
            raw[len(raw) // 2] ^= 0x01
            return f"{header_b64}.{payload_b64}.{_b64(bytes(raw))}"
        if attack == "unknown-key":
            key = self._stranger
        elif attack == "nonce-missing":
            claims.pop("nonce", None)
        elif attack == "nonce-replayed":
            earlier = [n for n in self.nonces if n != code.nonce]
            claims["nonce"] = earlier[-1] if earlier else secrets.token_urlsafe(16)
        elif attack == "expired":
            claims["iat"], claims["exp"] = int(time.time()) - 2 * TOKEN_LIFETIME, int(time.time()) - TOKEN_LIFETIME
        elif attack == "wrong-audience":
            claims["aud"] = "another-client"
        elif attack == "wrong-issuer":
            claims["iss"] = "https://auth.esw.esante.gouv.fr.example/auth/realms/esante-wallet"
        elif attack == "weaker-acr":
            claims["acr"] = WEAKER_ACR
        return jwt.encode({"alg": ALG, "kid": key.kid, "typ": "JWT"}, claims, key)

    # -- pages ------------------------------------------------------------------------------

    @staticmethod
    def _page(status: int, title: str, body: str) -> Response:
        text = (f"<!doctype html><html lang='fr'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                "<meta name='referrer' content='no-referrer'></head>"
                f"<body><header><h1>Pro Santé Connect (simulateur de test)</h1></header><main><h2>{html.escape(title)}</h2>{body}</main>"
                "</body></html>")
        return Response(status, text.encode(), "text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})

    # -- running ----------------------------------------------------------------------------

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.pki.stop()
            if self._own_folder:
                import shutil

                shutil.rmtree(self.credentials, ignore_errors=True)
