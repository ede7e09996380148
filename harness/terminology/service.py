"""Putting terminology sources together: cache, fallback, and the set-up a target asks for.

Target file::

    [terminology]
    server = "https://smt.esante.gouv.fr/fhir/"   # or service://terminology/ (our stand-in)
    token_url = "https://.../protocol/openid-connect/token"   # password grant (Keycloak)
    client_id = "user-api"
    snapshot = ["nos/", "jeuxDeValeurs/"]   # offline value sets (SVS XML, FHIR JSON)
    builtin_snapshot = true    # add the project's own small snapshot (default: only when no snapshot is given)
    fallback = true            # answer from the snapshot when the server fails (said in every verdict)
    timeout = 10               # seconds per request
    retries = 2                # on connection errors, 429 and 5xx, with exponential backoff
    cache_dir = "~/.cache/..." # answers kept across runs (default: the user's cache folder)
    cache_hours = 168          # how long a kept answer stays good; 0: no cache on disk

    [credentials]
    smt_username = "env:SMT_USER"
    smt_password = "env:SMT_PASSWORD"
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import HarnessError
from ..files import atomic_write
from ..messages import catalogue
from .model import WELL_KNOWN_SYSTEMS, Answer, Expansion, TerminologyService, ask, bare_oid, error_record
from .remote import PasswordGrant, RemoteTerminology, TerminologyUnavailable
from .snapshot import Snapshot, SnapshotTerminology

if TYPE_CHECKING:
    from ..messages import Localized

M = catalogue(__name__)

BUILTIN_SNAPSHOT = Path(__file__).with_name("builtin")
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ehealth-harness" / "terminology"


@dataclass
class CacheStats:
    memory: int = 0
    disk: int = 0
    asked: int = 0  # questions that went to the source behind the cache

    def to_dict(self) -> dict[str, int]:
        return {"memory_hits": self.memory, "disk_hits": self.disk, "asked": self.asked}


class CachedTerminology:
    """Each distinct question asked once per run (memory) and, for a remote server's
    definite answers, kept on disk across runs, keyed by server, operation, value set
    canonical URL (with its ``|version`` when pinned), system and code.

    Only the server's own statements go to disk (yes, no, "I do not hold that code system"),
    never an outage nor a fallback answer. An answer served from the cache keeps its original source (server and version) and
    says it came from the cache, and when it was stored.
    """

    def __init__(self, inner: TerminologyService, *, server_id: str | None = None, disk: Path | None = None,
                 ttl_seconds: float = 0.0, clock: Callable[[], float] = time.time) -> None:
        self.inner = inner
        self.server_id = server_id
        self.disk = Path(disk) if disk and server_id and ttl_seconds > 0 else None
        self.ttl = ttl_seconds
        self.clock = clock
        self.stats = CacheStats()
        self._memory: dict[tuple, Answer] = {}
        self._pending: dict[tuple, threading.Event] = {}
        self._lock = threading.Lock()

    def _disk_path(self, key: tuple) -> Path:
        assert self.disk is not None
        digest = hashlib.sha256(json.dumps([CACHE_FORMAT, self.server_id, *key]).encode("utf-8")).hexdigest()
        return self.disk / digest[:2] / f"{digest}.json"

    def _from_disk(self, key: tuple) -> Answer | None:
        if self.disk is None:
            return None
        path = self._disk_path(key)
        try:
            entry = json.loads(path.read_bytes())
            if entry["key"] != [self.server_id, *key] or self.clock() - float(entry["stored_at"]) > self.ttl:
                return None
            answer = Answer.from_dict(entry["answer"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent, stale or damaged: ask again (and overwrite)
        answer.cache = {"from": "disk", "stored": entry["stored"]}
        return answer

    def _to_disk(self, key: tuple, answer: Answer) -> None:
        # what the server itself said (yes, no, or "I do not hold that"), never an outage
        # nor a fallback answer
        if self.disk is None or answer.fallback or answer.source.get("kind") != "remote":
            return
        now = self.clock()
        entry = {"key": [self.server_id, *key], "stored_at": now,
                 "stored": datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "answer": answer.to_dict()}
        try:
            atomic_write(self._disk_path(key), json.dumps(entry, ensure_ascii=False).encode("utf-8"))
        except OSError:
            pass  # a read-only cache folder slows the next run down, nothing more

    def _get(self, key: tuple, ask: Callable[[], Answer]) -> Answer:
        # single flight: a question already being asked by another thread is waited for,
        # not asked twice
        while True:
            with self._lock:
                hit = self._memory.get(key)
                if hit is not None:
                    self.stats.memory += 1
                    return Answer.from_dict(hit.to_dict())
                pending = self._pending.get(key)
                if pending is None:
                    pending = self._pending[key] = threading.Event()
                    break
            pending.wait()
        try:
            answer = self._from_disk(key)
            if answer is not None:
                with self._lock:
                    self.stats.disk += 1
            else:
                answer = ask()
                with self._lock:
                    self.stats.asked += 1
                self._to_disk(key, answer)
            with self._lock:
                self._memory[key] = answer
            return Answer.from_dict(answer.to_dict())
        finally:
            with self._lock:
                self._pending.pop(key, None)
            pending.set()

    def validate_code(self, value_set: str, system: str, code: str) -> Answer:
        return self._get(("validate-code", value_set, system, code), lambda: self.inner.validate_code(value_set, system, code))

    def lookup(self, system: str, code: str) -> Answer:
        return self._get(("lookup", system, code), lambda: self.inner.lookup(system, code))

    def translate(self, concept_map: str, system: str, code: str) -> Answer:
        return self._get(("translate", concept_map, system, code), lambda: self.inner.translate(concept_map, system, code))

    def expand(self, value_set: str) -> Expansion:
        return self.inner.expand(value_set)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


class FallbackTerminology:
    """A remote server first; when it cannot answer, the snapshot if the user allowed it.

    Every answer the snapshot gives in its place carries ``fallback`` (why), so the verdicts
    that rely on it say so. Without permission (or without snapshot) the answer is "no
    source could say", and the check is INCONCLUSIVE, never PASS. After ``breaker``
    consecutive failures the server is taken as down for the rest of the run, so an outage
    costs a few timeouts, not one per question.
    """

    def __init__(self, remote: RemoteTerminology, snapshot: SnapshotTerminology | None, *, allowed: bool, breaker: int = 3) -> None:
        self.remote = remote
        # CDA names value sets and systems by OID, a FHIR server by canonical URL: the
        # snapshot knows both names (NOS designations, SVS urlFichier)
        self._canonical = snapshot.snapshot.canonical_value_set if snapshot else (lambda v: v)
        self._uri = snapshot.snapshot.system_uri if snapshot else _system_uri
        self.snapshot = snapshot
        self.allowed = allowed
        self.breaker = breaker
        self.failures = 0
        self.down: TerminologyUnavailable | None = None
        self.fallbacks = 0
        self._lock = threading.Lock()

    def _call(self, op: str, question: dict[str, str], primary: Callable[[], Answer], backup: Callable[[SnapshotTerminology], Answer]) -> Answer:
        reason = self.down
        if reason is None:
            try:
                answer = primary()
                with self._lock:
                    self.failures = 0
                if answer.question != question:
                    answer.asked, answer.question = answer.question, question
                return answer
            except TerminologyUnavailable as exc:
                with self._lock:
                    self.failures += 1
                    if self.failures >= self.breaker:
                        self.down = exc
                reason = exc
        failure = error_record(reason.kind, reason.detail)
        if self.allowed and self.snapshot is not None:
            with self._lock:
                self.fallbacks += 1
            answer = backup(self.snapshot)
            answer.fallback = failure
            return answer
        why = M("fallback.no_source", reason=reason.detail) if self.snapshot is None else M("fallback.not_allowed", reason=reason.detail)
        return Answer(op, question, None, source={"kind": "none", "server": self.remote.base}, error=error_record(reason.kind, why))

    def validate_code(self, value_set: str, system: str, code: str) -> Answer:
        return self._call("validate-code", {"value_set": value_set, "system": system, "code": code},
                          lambda: self.remote.validate_code(self._canonical(value_set), self._uri(system), code),
                          lambda s: s.validate_code(value_set, system, code))

    def lookup(self, system: str, code: str) -> Answer:
        return self._call("lookup", {"system": system, "code": code},
                          lambda: self.remote.lookup(self._uri(system), code), lambda s: s.lookup(system, code))

    def translate(self, concept_map: str, system: str, code: str) -> Answer:
        return self._call("translate", {"concept_map": concept_map, "system": system, "code": code},
                          lambda: self.remote.translate(concept_map, self._uri(system), code), lambda s: s.translate(concept_map, system, code))

    def expand(self, value_set: str) -> Expansion:
        try:
            return self.remote.expand(value_set)
        except TerminologyUnavailable:
            if self.allowed and self.snapshot is not None:
                return self.snapshot.expand(value_set)
            raise

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"server": self.remote.base, "fallback_allowed": self.allowed}
        if self.down is not None:  # do not spend another timeout on a server known to be down
            d["unavailable"] = self.down.messages
        else:
            try:
                d.update(self.remote.server())
            except TerminologyUnavailable as exc:
                d["unavailable"] = exc.messages
        if self.snapshot is not None:
            d["snapshot"] = self.snapshot.describe()
        return d


def _system_uri(system: str) -> str:
    oid = bare_oid(system)
    return system if oid is None else WELL_KNOWN_SYSTEMS.get(oid, f"urn:oid:{oid}")


@dataclass
class TerminologySetup:
    """The terminology a run uses, built once per process from the target."""

    service: CachedTerminology
    mode: str  # "remote" | "snapshot" | "offline-snapshot"
    remote: RemoteTerminology | None = None
    snapshot: SnapshotTerminology | None = None
    fallback: FallbackTerminology | None = None
    notes: list[dict[str, str]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mode": self.mode, "cache": self.service.stats.to_dict()}
        if self.fallback is not None:
            d.update(self.fallback.describe())
            d["fallbacks"] = self.fallback.fallbacks
        elif self.snapshot is not None:
            d["snapshot"] = self.snapshot.describe()
        if self.remote is not None:
            d["remote_calls"] = self.remote.calls
        if self.notes:
            d["notes"] = self.notes
        return d


def build(conf: dict[str, Any], *, offline: bool, resolve_url: Callable[[str], str], secret: Callable[[str], str | None],
          is_loopback: Callable[[str], bool], as_of: str | None = None) -> TerminologySetup:
    """The terminology set-up the ``[terminology]`` section describes (see module doc)."""
    folders = [Path(p) for p in conf.get("snapshot", [])]
    if conf.get("builtin_snapshot", not folders):
        folders.append(BUILTIN_SNAPSHOT)
    snapshot = SnapshotTerminology(Snapshot.load(folders), as_of) if folders else None
    server = conf.get("server")
    notes: list[dict[str, str]] = []
    if server:
        server = resolve_url(server)
        if offline and not is_loopback(server):
            notes.append(M("setup.offline", server=server).texts())
            server = None
    if not server:
        if snapshot is None:
            raise HarnessError(M("setup.no_source"))
        mode = "offline-snapshot" if offline else "snapshot"
        return TerminologySetup(CachedTerminology(snapshot), mode, snapshot=snapshot, notes=notes)
    timeout = float(conf.get("timeout", 10))
    auth = None
    if conf.get("token_url"):
        username, password = secret("smt_username"), secret("smt_password")
        if not username or not password:
            raise HarnessError(M("setup.credentials"))
        auth = PasswordGrant(resolve_url(conf["token_url"]), conf.get("client_id", "user-api"), username, password,
                             timeout=timeout, offline=offline)
    remote = RemoteTerminology(server, auth=auth, timeout=timeout, retries=int(conf.get("retries", 2)), offline=offline,
                               backoff=float(conf.get("backoff", 0.5)))
    fallback = FallbackTerminology(remote, snapshot, allowed=bool(conf.get("fallback", False)))
    hours = float(conf.get("cache_hours", 168))
    disk = Path(conf["cache_dir"]) if conf.get("cache_dir") else default_cache_dir()
    # a loopback stand-in changes with each run (its port): keep its answers in memory only
    ttl = 0.0 if is_loopback(server) and not conf.get("cache_dir") else hours * 3600
    cached = CachedTerminology(fallback, server_id=server, disk=disk, ttl_seconds=ttl)
    return TerminologySetup(cached, "remote", remote=remote, snapshot=snapshot, fallback=fallback, notes=notes)


def ask_all(setup: "TerminologySetup", questions: list[tuple[str, dict[str, str]]], *, budget: float, late: "Localized",
            workers: int = 8) -> list[Answer]:
    """Every question (``(op, question)``: validate-code, lookup, translate), answered in order,
    all within one total deadline of ``budget`` seconds: each exchange is bounded, but a server
    answering each just inside its timeout would otherwise hold a run for questions x timeout.
    A question not yet asked when the deadline passes is not asked: its answer says so (kind
    ``deadline``, ``late``), and whoever judges it cannot conclude on it. Against a remote
    server ``workers`` questions are in flight at once. :class:`TerminologyAuthError` is raised."""
    deadline = time.monotonic() + budget

    def one(item: tuple[str, dict[str, str]]) -> Answer:
        op, question = item
        if time.monotonic() >= deadline:
            return Answer(op, question, None, error=error_record("deadline", late))
        return ask(setup.service, op, question)

    if len(questions) > 1 and setup.remote is not None:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, questions))
    return [one(q) for q in questions]
