"""The services kit: what every simulator and stand-in of a national service stands on.

Exported by :mod:`harness` (plugins import it from there, loaded when first asked for):

- :class:`HttpService` (with :class:`Request`, :class:`Response`, :class:`Exchange`,
  :class:`Connection`, :class:`Journal`): a loopback HTTP(S) server that records each
  exchange, bounds sizes and times, and stops cleanly or says it could not
  (:class:`ServiceStopError`). A simulator is a subclass and a ``handle`` method.
- :class:`BoundedServer` and :class:`ConnectionBounds`: the connection bounds, for a server
  of another protocol (MLLP) built on ``socketserver``.
- :class:`TestPKI` (and the :mod:`~harness.services.pki` module): a PKI shaped like the
  health sector's, made at start, with its OCSP responder and CRL on loopback;
  :func:`check_revocation` is the relying party's side.
- the :mod:`~harness.services.browser` module: a real browser (headless Chromium driven by
  Playwright), sandboxed, in a process of its own killed whole at its deadline, for a
  plugin's driver that sees or acts as a person does.
"""
from importlib import import_module
from typing import Any

# loaded when first used: a run that serves nothing (the terminology stand-in's bounds, the
# MLLP receiver) does not pay for the HTTP base or the cryptography stack
_WHERE = {"BoundedServer": "bounds", "ConnectionBounds": "bounds", "Connection": "http", "Exchange": "http", "HttpService": "http",
          "Journal": "http", "Request": "http", "Response": "http", "ServiceStopError": "http", "Issued": "pki", "Revocation": "pki",
          "TestPKI": "pki", "check_revocation": "pki"}


def __getattr__(name: str) -> Any:
    if name in ("pki", "browser"):
        return import_module(f".{name}", __name__)
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BoundedServer",
    "browser",
    "Connection",
    "ConnectionBounds",
    "Exchange",
    "HttpService",
    "Issued",
    "Journal",
    "Request",
    "Response",
    "Revocation",
    "ServiceStopError",
    "TestPKI",
    "check_revocation",
    "pki",
]
