"""Where the harness may connect: loopback always, anything else unless ``--offline``."""
from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from .errors import HarnessError
from .evidence import HttpResult, RecordingHttp
from .messages import catalogue

M = catalogue(__name__)


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OfflineHttp:
    """``--offline``: the recording client refuses anything but loopback."""

    def __init__(self, http: RecordingHttp) -> None:
        self._http = http

    def _allowed(self, url: str) -> None:
        if not is_loopback(url):
            raise HarnessError(M("offline.refused", url=url))

    def get(self, url: str, **kw: Any) -> HttpResult:
        self._allowed(url)
        return self._http.get(url, **kw)

    def post(self, url: str, **kw: Any) -> HttpResult:
        self._allowed(url)
        return self._http.post(url, **kw)
