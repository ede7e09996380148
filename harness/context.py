"""What collectors, checks and services receive and return."""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from lxml import etree

from .errors import HarnessError
from .safety import parse_xml
from .target import SERVICE_URL_SCHEME
from .verdicts import Evaluation

if TYPE_CHECKING:
    from .terminology.model import CodedValue


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


# Coded values by (extractor, input name, artefact SHA-256): the collector, each terminology
# check and replay find the same values in the same bytes, so documents are parsed once.
_CODED_VALUES: dict[tuple[str, str, str], tuple] = {}
_CODED_VALUES_MAX = 4096


class CheckContext:
    """A check's whole world: recorded inputs, the sanitised target, nothing live."""

    def __init__(self, inputs: Mapping[str, Artefact], load: Callable[[str], bytes], target: Mapping[str, Any], scenario: str, salt: str = "",
                 extractors: Mapping[str, "CodedValueExtractor"] | None = None) -> None:
        self.inputs = dict(inputs)
        self._load = load
        self.target = target
        self.scenario = scenario
        self._salt = salt.encode("ascii")
        self._extractors = dict(extractors or {})

    def coded_values(self, name: str) -> "list[CodedValue]":
        """The coded values every plugin's extractor finds in input ``name`` (see the
        ``harness_coded_values`` hook), in extractor-name order."""
        found: list = []
        sha = self.artefact(name).sha256
        for key in sorted(self._extractors):
            memo = (key, name, sha)
            values = _CODED_VALUES.get(memo)
            if values is None:
                values = tuple(self._extractors[key](self, name) or ())
                if len(_CODED_VALUES) >= _CODED_VALUES_MAX:
                    _CODED_VALUES.pop(next(iter(_CODED_VALUES)))
                _CODED_VALUES[memo] = values
            found.extend(values)
        return found

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


def resolve_service_url(url: str, service_url: Callable[[str], str]) -> str:
    """``service://NAME/rest`` -> the started service's base URL + ``rest``; other URLs as they are."""
    if url.startswith(SERVICE_URL_SCHEME):
        svc, _, rest = url[len(SERVICE_URL_SCHEME):].partition("/")
        return service_url(svc).rstrip("/") + "/" + rest
    return url


class Collector(Protocol):
    def __call__(self, ctx: "CollectContext") -> Mapping[str, Artefact]: ...


class Check(Protocol):
    def __call__(self, ctx: CheckContext, ev: Evaluation) -> None: ...


class CodedValueExtractor(Protocol):
    def __call__(self, ctx: CheckContext, name: str) -> "list[CodedValue] | None": ...


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

    def __init__(self, *, target: Any, record: Callable[..., Artefact], http: Any, service_url: Callable[[str], str], lang: str,
                 inputs: Mapping[str, Artefact] | None = None, check_context: Callable[[Mapping[str, Artefact]], CheckContext] | None = None,
                 terminology: Callable[[], Any] | None = None) -> None:
        self.target = target
        self.record = record
        self.http = http
        self._service_url = service_url
        self.lang = lang
        # what the scenario's earlier collect steps gathered (a terminology collector asks
        # about the codes found in documents another collector fetched)
        self.inputs: dict[str, Artefact] = dict(inputs or {})
        self._check_context = check_context
        self._terminology = terminology

    def coded_values(self) -> "list[CodedValue]":
        """The coded values found in :attr:`inputs`, exactly as checks will find them."""
        if self._check_context is None:
            return []
        view = self._check_context(self.inputs)
        return [v for name in sorted(self.inputs) for v in view.coded_values(name)]

    def terminology(self) -> Any:
        """The run's terminology (:class:`harness.terminology.TerminologySetup`), built once
        per process from the target's ``[terminology]`` section and the ``--offline`` flag."""
        if self._terminology is None:
            raise HarnessError("terminologie indisponible dans ce contexte", "terminology unavailable in this context")
        return self._terminology()

    def fetch_index(self, index: str, *, prefix: str, label: str, limit: int = 500) -> dict[str, Artefact]:
        """Fetch a document index (a JSON list of URLs, relative to the index or absolute
        on the same origin) and every document it lists, recorded. Returns the exchanges
        (``{prefix}-index.exchange``, ``{prefix}-live/NNN.exchange``) and the document
        bodies (``{prefix}-live/NNN``). URLs leaving the software's origin are skipped."""
        from urllib.parse import urljoin, urlsplit

        res = self.http.get(index, label=f"{label}-index")
        outputs = {f"{prefix}-index.exchange": res.exchange}
        if not res.ok:
            raise HarnessError(f"index des documents injoignable : {index} (HTTP {res.status}, {res.error})",
                               f"document index unreachable: {index} (HTTP {res.status}, {res.error})")
        try:
            urls = json.loads(res.data)
            assert isinstance(urls, list) and all(isinstance(u, str) for u in urls)
        except (ValueError, AssertionError):
            raise HarnessError(f"index des documents : liste JSON d'URL attendue ({index})",
                               f"document index: a JSON list of URLs expected ({index})") from None
        for n, url in enumerate(urls[:limit], 1):
            absolute = urljoin(index, url)
            if urlsplit(absolute)[:2] != urlsplit(index)[:2]:
                continue  # the index may only point inside the software it describes
            doc = self.http.get(absolute, label=f"{label}-live:{n:03d}")
            outputs[f"{prefix}-live/{n:03d}.exchange"] = doc.exchange
            if doc.body is not None:
                outputs[f"{prefix}-live/{n:03d}"] = doc.body
        return outputs

    def endpoint(self, name: str) -> str | None:
        """The target's endpoint URL ``name``, with ``service://NAME/`` resolved."""
        url = self.target.endpoints.get(name)
        return None if url is None else resolve_service_url(url, self._service_url)
