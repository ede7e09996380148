"""What collectors, checks and services receive and return."""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from lxml import etree

from .errors import HarnessError
from .safety import parse_xml
from .target import SERVICE_URL_SCHEME
from .verdicts import Evaluation


@dataclass(frozen=True)
class Artefact:
    """A recorded artefact: its bytes are in the evidence store under ``sha256``."""

    sha256: str
    size: int
    media_type: str
    label: str

    def meta(self) -> dict[str, Any]:
        return {"size": self.size, "media_type": self.media_type, "label": self.label}


class MissingInput(HarnessError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Entrée absente : {name}", f"Missing input: {name}")
        self.name = name


class CheckContext:
    """A check's whole world: recorded inputs, the sanitised target, nothing live."""

    def __init__(self, inputs: Mapping[str, Artefact], load: Callable[[str], bytes], target: Mapping[str, Any], scenario: str, salt: str = "") -> None:
        self.inputs = dict(inputs)
        self._load = load
        self.target = target
        self.scenario = scenario
        self._salt = salt.encode("ascii")

    def mask(self, value: str) -> str:
        """A stand-in for a value that must not be shown (a production matricule): 12 hex
        digits of HMAC-SHA256 under the run's salt. The same value gives the same stand-in
        throughout a run and in its replay; the salt is kept in the bundle only, so a
        report alone does not let anyone test guesses."""
        return hmac.new(self._salt, value.encode("utf-8"), hashlib.sha256).hexdigest()[:12]

    def artefact(self, name: str) -> Artefact:
        try:
            return self.inputs[name]
        except KeyError:
            raise MissingInput(name) from None

    def has(self, name: str) -> bool:
        return name in self.inputs

    def read(self, name: str) -> bytes:
        return self._load(self.artefact(name).sha256)

    def json(self, name: str) -> Any:
        return json.loads(self.read(name))

    def xml(self, name: str) -> etree._ElementTree:
        return parse_xml(self.read(name), source=name)


class Collector(Protocol):
    def __call__(self, ctx: "CollectContext") -> Mapping[str, Artefact]: ...


class Check(Protocol):
    def __call__(self, ctx: CheckContext, ev: Evaluation) -> None: ...


@dataclass
class Service:
    """A started service: where it listens and how to stop it."""

    name: str
    base_url: str
    stop: Callable[[], None]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ServiceContext:
    """What a service plugin may use when starting: the target and the recorder."""

    target: Any
    record: Callable[..., Artefact]


class CollectContext:
    """A collector's world: the live target, services, a recording HTTP client."""

    def __init__(self, *, target: Any, record: Callable[..., Artefact], http: Any, service_url: Callable[[str], str], lang: str) -> None:
        self.target = target
        self.record = record
        self.http = http
        self._service_url = service_url
        self.lang = lang

    def endpoint(self, name: str) -> str | None:
        """The target's endpoint URL ``name``, with ``service://NAME/`` resolved."""
        url = self.target.endpoints.get(name)
        if url is None:
            return None
        if url.startswith(SERVICE_URL_SCHEME):
            svc, _, rest = url[len(SERVICE_URL_SCHEME):].partition("/")
            return self._service_url(svc).rstrip("/") + "/" + rest
        return url
