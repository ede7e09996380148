"""Collectors: run the official kit (XSD, schematrons) live and record what it said."""
from __future__ import annotations

import hashlib
import threading
from contextlib import contextmanager
from functools import lru_cache
from typing import Callable, NamedTuple
from pathlib import Path

from harness import CollectContext, HarnessError, NotApplicable, UnsafeInput, catalogue, collector, core_version

from .document import CdaDocument, read_cda
from .engine import EngineError, Saxon, shared_saxon
from .kit import Kit
from .release import default_kit
from .remote import RemoteKit, ServerGone
from .volets import select
from .xsd import XsdError, load_schema, validate

M = catalogue(__name__)
PROFILES = {
    "header": "profils/structurationMinimale/ASIP-STRUCT-MIN-StrucMin.sch",
    "ihe": "profils/IHE.sch",
    "content-models": "profils/CI-SIS_ModelesDeContenusCDA.sch",
    "ans-models": "profils/CI-SIS_Modeles_ANS.sch",
}

_remote: "RemoteKit | None | bool" = False  # False: not looked for yet in this process


def saxon() -> Saxon:
    return shared_saxon()


_LOCAL = threading.local()  # .on: this thread runs the stylesheets itself (a judge; the kit server judging)


@contextmanager
def locally():
    """Within it, this thread runs every stylesheet itself and never asks a kit server: a judge
    (:mod:`.judge`) is what a kit server runs, and may run in one."""
    before = getattr(_LOCAL, "on", False)
    _LOCAL.on = True
    try:
        yield
    finally:
        _LOCAL.on = before


def _server() -> "RemoteKit | None":
    global _remote
    if getattr(_LOCAL, "on", False):
        return None
    if _remote is False:
        _remote = RemoteKit.find()
    return _remote


def forget_files() -> None:
    """Forget the documents read from files (a judge reuses one file name for each document)."""
    _load_cached.cache_clear()


def svrl_prefetch(pairs: list) -> dict:
    """With a kit server: the SVRL of every (compiled schematron, document) pair, asked in one
    batch per stylesheet (each document sent once, by its digest after), for :func:`svrl_of`
    to hand out; in process, nothing (each is computed when asked)."""
    global _remote
    if _server() is None:
        return {}
    groups: dict[str, tuple] = {}
    for compiled, loaded in pairs:
        groups.setdefault(compiled.xslt_path, (compiled, []))[1].append(loaded)
    ready: dict = {}
    try:
        for xslt, (compiled, loadeds) in groups.items():
            results = _remote.run_many(xslt, [loaded.text() for loaded in loadeds], compiled.documents)
            ready.update({(xslt, loaded.digest()): result for loaded, result in zip(loadeds, results)})
    except ServerGone:
        _remote = None  # gone meanwhile: what it answered is kept, the rest is computed in process
    return ready


def svrl_of(compiled, loaded: "_Loaded", ready: dict | None = None) -> bytes:
    """The SVRL of a compiled schematron on a document: prefetched (:func:`svrl_prefetch`), or
    from the kit server when one of this harness is running (stylesheets already compiled), else
    in process; the same bytes."""
    global _remote
    if ready and (compiled.xslt_path, loaded.digest()) in ready:
        result = ready[(compiled.xslt_path, loaded.digest())]
        if isinstance(result, EngineError):
            raise result
        return result
    if _server() is not None:
        try:
            [result] = _remote.run_many(compiled.xslt_path, [loaded.text()], compiled.documents)
        except ServerGone:
            _remote = None  # gone meanwhile: the rest of the run in process
        else:
            if isinstance(result, EngineError):
                raise result
            return result
    return saxon().run(compiled.xslt_path, loaded.node(), compiled.documents)


class _Loaded:
    """One document read once per process: bytes, hardened parse, and its Saxon tree.

    Every CDA collector (XSD, each profile, volets) reads the same files; parsing them
    once per process instead of once per collector saves most of the parse time.
    """

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.doc: CdaDocument | None = None
        self.unreadable: UnsafeInput | None = None
        try:
            self.doc = read_cda(self.data, name)
        except UnsafeInput as exc:
            self.unreadable = exc
        self._node = None
        self._text: tuple[bytes, str] | None = None
        self._xsd: dict[int, list[dict]] = {}

    def xsd_errors(self, schema) -> list[dict]:
        """XSD validation errors, computed once per schema: every CDA scenario records them."""
        if id(schema) not in self._xsd:
            self._xsd[id(schema)] = validate(schema, self.doc.root)
        return self._xsd[id(schema)]

    def text(self) -> bytes:
        """The document as Saxon reads it (the hardened parse, serialised), and its SHA-256."""
        if self._text is None:
            text = self.doc.text().encode("utf-8")
            self._text = (text, hashlib.sha256(text).hexdigest())
        return self._text[0]

    def digest(self) -> str:
        self.text()
        return self._text[1]

    def node(self):
        if self._node is None:
            self._node = saxon().parse(self.text())
        return self._node


@lru_cache(maxsize=None)
def _load_cached(path: str, mtime_ns: int, size: int) -> _Loaded:
    with open(path, "rb") as fh:  # its size was checked against MAX_FILE (files_of)
        return _Loaded(fh.read(MAX_FILE + 1), Path(path).name)


_SENT: dict[tuple[str, str], _Loaded] = {}


def _load_sent(digest: str, name: str, read: Callable[[], bytes]) -> _Loaded:
    """A document an earlier step recorded, loaded once per process (by its SHA-256)."""
    if (digest, name) not in _SENT:
        if len(_SENT) >= 64:
            _SENT.pop(next(iter(_SENT)))
        _SENT[(digest, name)] = _Loaded(read(), name)
    return _SENT[(digest, name)]


class Source(NamedTuple):
    """A document for the kit: its name in the record (``doc/NAME``) and how to load it."""

    name: str
    load: Callable[[], _Loaded]


SENT = "-doc"  # earlier inputs whose group ends so hold documents the software sent (dmp-doc, mss-doc)


def load(path: Path) -> _Loaded:
    """The loaded document, shared by collectors while the file is unchanged."""
    st = path.stat()
    return _load_cached(str(path.resolve()), st.st_mtime_ns, st.st_size)


def kit_of(ctx: CollectContext) -> Kit:
    # the target (file or --set cda.kit=...) first; the environment names a default kit; else the
    # pinned release, once fetched (harness kit fetch)
    root = ctx.target.section("cda").get("kit") or default_kit()
    if not root:
        raise NotApplicable(M("collect.no_kit"))
    return _kit(str(Path(root).resolve()), core_version())


@lru_cache(maxsize=4)
def _kit(root: str, version: str) -> Kit:
    """The kit, hashed once per process: every CDA collector asks for it, and the kit
    does not change during a run."""
    return Kit(Path(root), version)


MAX_FILE = 64 * 1024 * 1024


def documents_of(ctx: CollectContext, *, refuse: bool = False) -> list[Source]:
    """The documents the kit judges: those the software sent, when an earlier collect step
    of the scenario gathered them (inputs ``*-doc/ITEM``: DMP submissions, MSSanté archives),
    else the ``[cda] documents`` files (:func:`files_of`)."""
    sent = sorted(k for k in ctx.inputs if k.split("/", 1)[0].endswith(SENT) and "/" in k)
    if sent:
        return [Source(k.replace("/", "-"), lambda k=k: _load_sent(ctx.inputs[k].sha256, k, lambda: ctx.read_input(k))) for k in sent]
    return [Source(path.name, lambda path=path: load(path)) for path in files_of(ctx, refuse=refuse)]


def files_of(ctx: CollectContext, *, refuse: bool = False) -> list[Path]:
    """The ``[cda] documents`` files within the size limit; with ``refuse``, each larger one
    is refused (the step that records the documents says so once; the others skip them)."""
    folder = ctx.target.section("cda").get("documents")
    if not folder:
        raise NotApplicable(M("collect.no_documents_folder"))
    if not folder.is_dir():
        raise HarnessError(M("collect.folder_not_found", folder=str(folder)))
    kept = []
    for path in sorted(folder.glob("*.xml")):
        size = path.stat().st_size
        if size <= MAX_FILE:
            kept.append(path)
        elif refuse:
            ctx.refuse(path.name, M("collect.too_large", size=size, limit=MAX_FILE))
    return kept


@collector(produces=["doc", "doc-index.exchange", "doc-live", "doc-live.exchange"])
def collect_files(ctx: CollectContext) -> dict:
    """The documents alone, recorded as they are, without the kit: the ``[cda] documents``
    folder and the software's live document index (``endpoints.cda_index``). A document over
    the size limit is refused, the others are read."""
    folder = ctx.target.section("cda").get("documents")
    index = ctx.endpoint("cda_index")
    if not folder and index is None:
        raise NotApplicable(M("collect.no_documents"))
    outputs = {}
    if folder:
        for path in files_of(ctx, refuse=True):
            data = ctx.read_file(path, limit=MAX_FILE)
            if data is not None:
                outputs[f"doc/{path.name}"] = ctx.record(data, media_type="application/xml", label=f"cda.document:{path.name}")
    if index is not None:
        outputs.update(ctx.fetch_index(index, prefix="doc", label="cda.document"))
    return outputs


@collector(produces=["cda.kit", "doc", "xsd"])
def collect_documents(ctx: CollectContext) -> dict:
    """Each document (recorded as is), its XSD validation, and the kit's identity."""
    kit = kit_of(ctx)
    outputs = {"cda.kit": ctx.record_json(kit.identity(), label="cda.kit")}
    schema_error = None
    try:
        schema = load_schema(kit.xsd)
    except XsdError as exc:
        schema, schema_error = None, exc.messages
    for src in documents_of(ctx, refuse=True):
        loaded = src.load()
        outputs[f"doc/{src.name}"] = ctx.record(loaded.data, media_type="application/xml", label=f"cda.document:{src.name}")
        if loaded.unreadable is not None:
            xsd = {"unreadable": loaded.unreadable.messages}
        elif schema is None:
            xsd = {"error": schema_error}
        else:
            xsd = {"errors": loaded.xsd_errors(schema), "embedded": loaded.doc.embedded}
        outputs[f"xsd/{src.name}"] = ctx.record_json(xsd, label=f"cda.xsd:{src.name}")
    return outputs


def _description(compiled, kit: Kit) -> dict:
    """What a verifier needs to know of a compiled schematron: what it holds and how the kit was fixed."""
    return {"schematron": compiled.schematron, "phase": compiled.phase, "rules": compiled.rule_count,
            "asserts": compiled.assert_count, "quirks": compiled.quirks, "error": compiled.error,
            "files": compiled.files, "kit": kit.identity()}


def _collect_profile(ctx: CollectContext, key: str) -> dict:
    kit = kit_of(ctx)
    sch = kit.root / "schematrons" / PROFILES[key]
    compiled = kit.compiled(sch)
    outputs = {f"sch/{key}": ctx.record_json(_description(compiled, kit), label=f"cda.schematron:{key}")}
    if compiled.error:
        return outputs
    sources = documents_of(ctx)
    pairs = []
    for src in sources:
        try:
            loaded = src.load()
        except UnsafeInput:
            continue  # said below, as before
        if loaded.unreadable is None:
            pairs.append((compiled, loaded))
    ready = svrl_prefetch(pairs)
    for src in sources:
        try:
            loaded = src.load()
            if loaded.unreadable is not None:
                outputs[f"svrl/{key}/{src.name}"] = ctx.record_json({"unreadable": loaded.unreadable.messages}, label=f"cda.svrl-error:{key}:{src.name}")
                continue
            svrl = svrl_of(compiled, loaded, ready)
            outputs[f"svrl/{key}/{src.name}"] = ctx.record(svrl, media_type="application/svrl+xml", label=f"cda.svrl:{key}:{src.name}")
        except (UnsafeInput, EngineError) as exc:
            outputs[f"svrl/{key}/{src.name}"] = ctx.record_json({"error": exc.messages}, label=f"cda.svrl-error:{key}:{src.name}")
    return outputs


@collector(produces=["volets", "svrl", "sch"])
def collect_volets(ctx: CollectContext) -> dict:
    """Per document: which volets apply (from the kit's identity rules), and their SVRL."""
    kit = kit_of(ctx)
    identities = kit.volet_identities()
    outputs = {}
    used: dict[str, dict] = {}
    compiled_volets: dict = {}
    sources = documents_of(ctx)
    chosen_of: dict[str, dict] = {}
    pairs = []
    for src in sources:  # which volets each document takes, first: with a kit server, their SVRL asked in batches
        loaded = src.load()
        if loaded.unreadable is not None:
            continue
        chosen_of[src.name] = select(loaded.doc.root, identities)
        for volet in chosen_of[src.name]["volets"]:
            if volet not in compiled_volets:  # read the cache entry once per volet, not once per document
                compiled_volets[volet] = kit.compiled(kit.root / volet)
                used[volet] = _description(compiled_volets[volet], kit)
            if not compiled_volets[volet].error:
                pairs.append((compiled_volets[volet], loaded))
    ready = svrl_prefetch(pairs)
    for src in sources:
        loaded = src.load()
        if loaded.unreadable is not None:
            outputs[f"volets/{src.name}"] = ctx.record_json({"unreadable": loaded.unreadable.messages}, label=f"cda.volets:{src.name}")
            continue
        chosen = chosen_of[src.name]
        outputs[f"volets/{src.name}"] = ctx.record_json(chosen, label=f"cda.volets:{src.name}")
        for volet in chosen["volets"]:
            name = f"svrl/volet/{src.name}/{volet}"
            compiled = compiled_volets[volet]
            if compiled.error:
                outputs[name] = ctx.record_json({"error": compiled.error, "quirks": compiled.quirks}, label=f"cda.svrl-error:{volet}:{src.name}")
                continue
            try:
                outputs[name] = ctx.record(svrl_of(compiled, loaded, ready), media_type="application/svrl+xml", label=f"cda.svrl:{volet}:{src.name}")
            except EngineError as exc:
                outputs[name] = ctx.record_json({"error": exc.messages}, label=f"cda.svrl-error:{volet}:{src.name}")
    outputs["sch/volets"] = ctx.record_json(used, label="cda.schematron:volets")
    return outputs


def _profile_collector(key: str):
    @collector(produces=["sch", "svrl"])
    def collect(ctx: CollectContext) -> dict:
        return _collect_profile(ctx, key)

    return collect


def profile_collectors() -> dict:
    return {f"cda.svrl.{key}": _profile_collector(key) for key in PROFILES}


def kit_collectors() -> dict:
    """The kit's collectors (the documents with their XSD results, each profile, the volets):
    the plugin registers them, and a judge (:mod:`.judge`) runs them on one document."""
    return {"cda.documents": collect_documents, "cda.svrl.volets": collect_volets, **profile_collectors()}
