"""The demo's own login (beside Pro Santé Connect): a password, then a second factor, a TOTP
code (RFC 6238, pyotp), as the e-ID referential asks of any means of identification other
than PSC; failures lock the account; a means of identification is enrolled only by a
professional already logged in. Each defect of :mod:`.psc_defects` (``eid-*``) breaks one.
"""
from __future__ import annotations

import secrets
import threading

import pyotp

LOCKOUT_AFTER = 5  # wrong codes that lock the account
NATIONAL_ID, GIVEN, FAMILY = "899700366240", "KIT", "DOC0036624"  # the account belongs to PSC's test professional


class LocalLogin:
    def __init__(self, defects: set[str], username: str, password: str, totp_secret: str) -> None:
        self.defects, self.username, self._password, self._totp = defects, username, password, pyotp.TOTP(totp_secret)
        self.failures = 0
        self.locked = False
        self.pending: set[str] = set()  # second-factor cookies: the password was right
        self._lock = threading.Lock()

    def password(self, username: str, password: str) -> str:
        """"session" (logged in), "code" (a second factor is asked: a cookie is set) or a refusal."""
        if self.locked and "eid-no-lockout" not in self.defects:
            return "locked"
        if not (secrets.compare_digest(username.encode(), self.username.encode()) and self._password
                and secrets.compare_digest(password.encode(), self._password.encode())):
            return "refused"
        return "session" if "eid-password-only" in self.defects else "code"

    def start_code(self) -> str:
        cookie = secrets.token_urlsafe(24)
        with self._lock:
            self.pending.add(cookie)
        return cookie

    def code(self, cookie: str, code: str) -> str:
        """"session", or why not: "expired" (no password step), "locked", "refused"."""
        with self._lock:
            if cookie not in self.pending:
                return "expired"
            if self.locked and "eid-no-lockout" not in self.defects:
                return "locked"
            if self._totp.verify(code.strip(), valid_window=1):
                self.pending.discard(cookie)
                self.failures = 0
                return "session"
            self.failures += 1
            if self.failures >= LOCKOUT_AFTER:
                self.locked = True
            return "refused"
