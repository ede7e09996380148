"""What collectors, checks and services receive and return."""
from __future__ import annotations

import hashlib
import hmac
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable, Mapping

from lxml import etree

from ..errors import HarnessError, UnsafeInput
from ..messages import Localized, catalogue
from ..results import ArtefactMeta
from ..safety.inputs import parse_json, parse_xml
from .target import SERVICE_URL_SCHEME, Target

if TYPE_CHECKING:
    from ..terminology.model import CodedValue

M = catalogue(__name__)


@dataclass(frozen=True)
class Artefact:
    """A recorded artefact: its bytes are in the evidence store under ``sha256``."""

    sha256: str
    size: int
    media_type: str
    label: str

    def meta(self) -> ArtefactMeta:
        return ArtefactMeta(self.size, self.media_type, self.label)


def input_group(name: str) -> str:
    """The declared input an input name belongs to: ``doc/a.xml`` -> ``doc``, ``history`` -> ``history``."""
    return name.split("/", 1)[0]


class MissingInput(HarnessError):
    def __init__(self, name: str) -> None:
        super().__init__(M("input.missing", name=name))
        self.name = name


class UndeclaredInput(HarnessError):
    def __init__(self, name: str, declared: Iterable[str]) -> None:
        super().__init__(M("input.undeclared", name=input_group(name), declared=", ".join(sorted(declared)) or "-"))
        self.name = name


# Coded values by (extractor, input name, artefact SHA-256): the collector, each terminology
# check and replay find the same values in the same bytes, so documents are parsed once.
_CODED_VALUES: dict[tuple[str, str, str], tuple] = {}
_CODED_VALUES_MAX = 4096


class CheckContext:
    """A check's whole world: the recorded inputs it declared, the target as recorded,
    nothing live.

    Inputs are named ``NAME`` (one artefact) or ``NAME/ITEM`` (one of a collection, such as
    ``doc/report.xml``); a check reads only the NAMEs it declared (``@harness.check(reads=...)``).
    """

    def __init__(self, inputs: Mapping[str, Artefact], load: Callable[[str], bytes], target: Target, scenario: str, salt: str = "",
                 extractors: Mapping[str, Callable[..., Any]] | None = None, reads: Iterable[str] | None = None,
                 opener: Callable[[str], BinaryIO] | None = None) -> None:
        self._reads = None if reads is None or "*" in reads else frozenset(reads)
        self.inputs = {k: a for k, a in inputs.items() if self._reads is None or input_group(k) in self._reads}
        self._load = load
        self._opener = opener
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

    def _declared(self, name: str) -> None:
        if self._reads is not None and input_group(name) not in self._reads:
            raise UndeclaredInput(name, self._reads)

    def artefact(self, name: str) -> Artefact:
        self._declared(name)
        try:
            return self.inputs[name]
        except KeyError:
            raise MissingInput(name) from None

    def has(self, name: str) -> bool:
        self._declared(name)
        return name in self.inputs

    def items(self, group: str) -> dict[str, Artefact]:
        """The collection ``group``: ``{ITEM: artefact}`` for every input ``group/ITEM``, sorted."""
        self._declared(group)
        prefix = group + "/"
        return {k[len(prefix):]: a for k, a in sorted(self.inputs.items()) if k.startswith(prefix)}

    def read(self, name: str) -> bytes:
        return self._load(self.artefact(name).sha256)

    def open(self, name: str) -> BinaryIO:
        """The input as a seekable binary file, read a piece at a time: a large artefact (an
        archive carrying a 100 MB document) is never held whole in memory. Close it after use
        (``with ctx.open(name) as fh``)."""
        digest = self.artefact(name).sha256
        if self._opener is None:
            return io.BytesIO(self._load(digest))
        return self._opener(digest)

    def json(self, name: str) -> Any:
        """The input as JSON, through the bounded reader (:func:`harness.parse_json`)."""
        return parse_json(self.read(name), source=name)

    def xml(self, name: str) -> etree._ElementTree:
        return parse_xml(self.read(name), source=name)


def resolve_service_url(url: str, service_url: Callable[[str], str]) -> str:
    """``service://NAME/rest`` -> the started service's base URL + ``rest``; other URLs as they are."""
    if url.startswith(SERVICE_URL_SCHEME):
        svc, _, rest = url[len(SERVICE_URL_SCHEME):].partition("/")
        return service_url(svc).rstrip("/") + "/" + rest
    return url


@dataclass
class Service:
    """A started service: where it listens and how to stop it; ``received``, when the service can
    say it: what it received so far, as data (a list of dicts: ``n``, ``at``, ``media_type``,
    ``data``, the bytes as received, and ``facts``), for another plugin that judges what the
    software sent it (:meth:`CollectContext.endpoint_received`)."""

    name: str
    base_url: str
    stop: Callable[[], None]
    info: dict[str, Any] = field(default_factory=dict)
    received: Callable[[], list[dict[str, Any]]] | None = None


@dataclass
class ServiceContext:
    """What a service plugin may use when starting: the target and the recorder."""

    target: Target
    record: Callable[..., Artefact]


class CollectContext:
    """A collector's world: the live target, services, a recording HTTP client."""

    def __init__(self, *, target: Target, record: Callable[..., Artefact], http: Any, service_url: Callable[[str], str], lang: str,
                 inputs: Mapping[str, Artefact] | None = None, check_context: Callable[[Mapping[str, Artefact]], CheckContext] | None = None,
                 terminology: Callable[[], Any] | None = None, service_info: Callable[[str], Mapping[str, Any]] | None = None,
                 service_received: Callable[[str], list[dict[str, Any]] | None] | None = None) -> None:
        self.target = target
        self.record = record
        self.http = http
        self._service_url = service_url
        self._service_received = service_received
        self._service_info = service_info
        self.lang = lang
        # what the scenario's earlier collect steps gathered (a terminology collector asks
        # about the codes found in documents another collector fetched)
        self.inputs: dict[str, Artefact] = dict(inputs or {})
        self.refused: list[tuple[str, Localized]] = []
        self._check_context = check_context
        self._terminology = terminology

    def read_input(self, name: str) -> bytes:
        """The bytes of an input an earlier collect step of the scenario gathered
        (:attr:`inputs`): the kit judges the documents a DMP or MSSanté step recorded."""
        if name not in self.inputs or self._check_context is None:
            raise MissingInput(name)
        return self._check_context({name: self.inputs[name]}).read(name)

    def refuse(self, item: str, reason: Localized) -> None:
        """Say that ``item`` (a file, a document the software lists) was not taken, and why:
        the scenario cannot pass without it, so it ends in ERROR with this reason."""
        self.refused.append((item, reason))

    def read_file(self, path: Path, *, limit: int) -> bytes | None:
        """A file's bytes, at most ``limit`` of them: a larger or unreadable file is refused
        (:meth:`refuse`) and None is returned, the other files of its folder are still read."""
        try:
            size = path.stat().st_size
            if size > limit:
                self.refuse(path.name, M("file.too_large", size=size, limit=limit))
                return None
            with path.open("rb") as fh:
                data = fh.read(limit + 1)
        except OSError as exc:
            self.refuse(path.name, M("file.unreadable", error=exc.strerror or type(exc).__name__))
            return None
        if len(data) > limit:  # it grew while being read
            self.refuse(path.name, M("file.too_large", size=len(data), limit=limit))
            return None
        return data

    def record_json(self, value: Any, *, label: str) -> Artefact:
        """Record a JSON value (sorted keys, UTF-8), as collectors record what they computed."""
        return self.record(json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8"), media_type="application/json", label=label)

    def coded_values(self) -> "list[CodedValue]":
        """The coded values found in :attr:`inputs`, exactly as checks will find them (an
        input that cannot be read gives none here: the checks report it)."""
        if self._check_context is None:
            return []
        view = self._check_context(self.inputs)
        found = []
        for name in sorted(self.inputs):
            try:
                found += view.coded_values(name)
            except UnsafeInput:
                continue
        return found

    def terminology(self) -> Any:
        """The run's terminology (:class:`harness.terminology.TerminologySetup`), built once
        per process from the target's ``[terminology]`` section and the ``--offline`` flag."""
        if self._terminology is None:
            raise HarnessError(M("terminology.unavailable"))
        return self._terminology()

    def fetch_index(self, index: str, *, prefix: str, label: str, limit: int = 500) -> dict[str, Artefact]:
        """Fetch a document index (a JSON list of URLs, relative to the index or absolute
        on the same origin) and every document it lists, recorded. Returns the exchanges
        (``{prefix}-index.exchange``, ``{prefix}-live.exchange/NNN``) and the document
        bodies (``{prefix}-live/NNN``). URLs leaving the software's origin are skipped."""
        from urllib.parse import urljoin, urlsplit

        res = self.http.get(index, label=f"{label}-index")
        outputs = {f"{prefix}-index.exchange": res.exchange}
        if not res.ok:
            raise HarnessError(M("index.unreachable", url=index, status=res.status, error=res.error))
        try:
            urls = parse_json(res.data, source=index)
            assert isinstance(urls, list) and all(isinstance(u, str) for u in urls)
        except (UnsafeInput, AssertionError):
            raise HarnessError(M("index.not_a_list", url=index)) from None
        for n, url in enumerate(urls[:limit], 1):
            absolute = urljoin(index, url)
            if urlsplit(absolute)[:2] != urlsplit(index)[:2]:
                continue  # the index may only point inside the software it describes
            doc = self.http.get(absolute, label=f"{label}-live:{n:03d}")
            outputs[f"{prefix}-live.exchange/{n:03d}"] = doc.exchange
            if doc.ok and doc.body is not None:
                outputs[f"{prefix}-live/{n:03d}"] = doc.body
            else:  # a document the software lists but does not serve was not judged
                self.refuse(f"{prefix}-live/{n:03d}", M("index.document_failed", url=absolute, status=doc.status or "-",
                                                        error=doc.error or "-"))
        return outputs

    @property
    def offline(self) -> bool:
        """Whether the run is ``--offline`` (loopback only): for what a collector reaches by other
        means than :attr:`http`, a browser's page loads."""
        return bool(getattr(getattr(self.http, "client", None), "offline", False))

    def endpoint(self, name: str) -> str | None:
        """The target's endpoint URL ``name``, with ``service://NAME/`` resolved."""
        url = self.target.endpoints.get(name)
        return None if url is None else resolve_service_url(url, self._service_url)

    def endpoint_service(self, name: str) -> Mapping[str, Any] | None:
        """What the service behind the target's endpoint ``name`` (``service://SERVICE/``)
        says of itself (its ``info``: the client credentials a simulator issued the software,
        for example), started if it was not; None when the endpoint is not a service's. A
        plugin reads another plugin's service this way, never by importing it."""
        url = self.target.endpoints.get(name)
        if url is None or not url.startswith(SERVICE_URL_SCHEME) or self._service_info is None:
            return None
        return dict(self._service_info(url[len(SERVICE_URL_SCHEME):].partition("/")[0]))

    def endpoint_received(self, name: str) -> list[dict[str, Any]] | None:
        """What the service behind the target's endpoint ``name`` (``service://SERVICE/``) received
        so far, as data (:class:`Service`'s ``received``), started if it was not; None when the
        endpoint is not a service's or the service does not say. Read it before and after asking
        the software something: the difference is what the software sent meanwhile."""
        url = self.target.endpoints.get(name)
        if url is None or not url.startswith(SERVICE_URL_SCHEME) or self._service_received is None:
            return None
        return self._service_received(url[len(SERVICE_URL_SCHEME):].partition("/")[0])

