"""An IHE XDM archive (ITI TF-1 16, ITI TF-3 4.2.3.2 / 4.3.1): its layout, its metadata,
and the documents the metadata lists, read through the core's safe archive reader.

A domain library for the MSSanté/XDM plugin: pure functions of a :class:`harness.SafeArchive`.
Documents are hashed as they are read (a chunk at a time): an archive carrying a large
document is never held whole in memory by this module.

Layout: ``README.TXT`` and ``INDEX.HTM`` at the root; one folder per submission set under
``IHE_XDM/`` (``SUBSET01`` by convention) holding ``METADATA.XML`` and the documents. A
document entry's ``URI`` names its file relative to its subset folder (IHE); the form
relative to ``IHE_XDM/`` (``SUBSET01/DOC0001.XML``) is seen in the wild, accepted, and
reported as not standard. Names are matched without regard to letter case (archives are
written on case-insensitive systems); a name whose case differs is reported.
"""
from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field

from harness import ArchiveLimits, Problem, SafeArchive, Severity, UnsafeInput, catalogue, parse_xml

from . import ebrim, rules
from .ebrim import Submission

M = catalogue(__name__)

ROOT = "IHE_XDM/"
# An XDM archive carries a few documents: far fewer entries than the core's default bound
LIMITS = ArchiveLimits(max_entries=2_000, max_total_bytes=512 * 1024 * 1024, max_entry_bytes=256 * 1024 * 1024, max_ratio=200.0)
METADATA = "METADATA.XML"


@dataclass
class Document:
    """A file of a subset, and the entry that lists it (None: not listed)."""

    path: str
    entry_id: str | None
    sha1: str
    size: int


@dataclass
class Subset:
    folder: str  # IHE_XDM/SUBSET01/
    metadata_path: str
    submission: Submission | None
    documents: list[Document] = field(default_factory=list)


@dataclass
class XdmReading:
    subsets: list[Subset] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def fail(self, rule: str, location: str, message, severity: Severity = Severity.ERROR) -> None:
        self.problems.append(Problem(rule, severity, location, message))


def _digest(archive: SafeArchive, name: str) -> tuple[str, int]:
    sha1, size = hashlib.sha1(), 0
    for chunk in archive.chunks(name):
        sha1.update(chunk)
        size += len(chunk)
    return sha1.hexdigest(), size


def read(archive: SafeArchive, source: str = "") -> XdmReading:
    """The layout, each subset's metadata (read after recovery when not well formed), and
    each listed document found, hashed and measured; every departure is a problem."""
    r = XdmReading()
    at = f"{source}:" if source else ""
    names = archive.names()
    by_upper = {n.upper(): n for n in names}
    for required, rule in (("README.TXT", "XDM-ARC-01"), ("INDEX.HTM", "XDM-ARC-02")):
        found = by_upper.get(required)
        if found is None:
            r.fail(rule, f"{at}{required}", M("xdm.missing_file", name=required))
        elif found != required:
            r.fail(rule, f"{at}{found}", M("xdm.case", name=found, expected=required), Severity.WARNING)
    metadata = sorted(n for n in names if n.upper().startswith(ROOT) and n.upper().endswith("/" + METADATA) and n.count("/") == 2)
    if not metadata:
        r.fail("XDM-ARC-03", f"{at}{ROOT}", M("xdm.no_subset"))
    for meta in metadata:
        r.subsets.append(_subset(archive, meta, names, r, at))
    listed = {d.path for s in r.subsets for d in s.documents}
    for name in names:
        upper = name.upper()
        if upper.startswith(ROOT) and upper.count("/") >= 2 and not upper.endswith("/" + METADATA) and name not in listed:
            r.fail("XDM-LIST-01", f"{at}{name}", M("xdm.unlisted", name=name))
    return r


def _subset(archive: SafeArchive, meta: str, names: list[str], r: XdmReading, at: str) -> Subset:
    folder = meta[: -len(METADATA)]
    if folder.upper() != folder:
        r.fail("XDM-ARC-04", f"{at}{folder}", M("xdm.folder_case", folder=folder), Severity.WARNING)
    subset = Subset(folder, meta, None)
    try:
        tree = parse_xml(archive.read(meta), source=meta)
    except UnsafeInput as exc:
        if exc.reason != "xml-malformed":
            r.fail("XDM-MD-00", f"{at}{meta}", M("xdm.metadata_unreadable", reason=exc.detail))
            return subset
        r.fail("XDM-MD-00", f"{at}{meta}", M("xdm.metadata_malformed", reason=exc.detail))
        try:
            tree = parse_xml(archive.read(meta), source=meta, recover=True)
        except UnsafeInput as again:
            r.fail("XDM-MD-00", f"{at}{meta}", M("xdm.metadata_unreadable", reason=again.detail))
            return subset
    request = ebrim.find_request(tree.getroot())
    if request is None:
        r.fail("XDM-MD-00", f"{at}{meta}", M("xdm.no_request"))
        return subset
    subset.submission = ebrim.read_submission(request)
    by_upper = {n.upper(): n for n in names}
    for entry in subset.submission.documents:
        where = f"{at}{meta} {entry.location}/Slot[@name='URI']"
        uri = entry.slot("URI")
        if not uri:
            continue  # a missing URI is a metadata rule (xdm profile)
        if uri.startswith("/") or ".." in uri.split("/") or "\\" in uri:
            r.fail("XDM-URI-01", where, M("xdm.uri_escape", uri=uri))
            continue
        standard = posixpath.join(folder, uri)
        from_root = posixpath.join(ROOT, uri)
        path = by_upper.get(standard.upper())
        if path is None and "/" in uri and by_upper.get(from_root.upper()):
            path = by_upper[from_root.upper()]
            r.fail("XDM-URI-02", where, M("xdm.uri_from_root", uri=uri, expected=posixpath.relpath(path, folder)), Severity.WARNING)
        if path is None:
            r.fail("XDM-URI-01", where, M("xdm.uri_missing", uri=uri, folder=folder))
            continue
        if not path.upper().startswith(folder.upper()):
            r.fail("XDM-URI-01", where, M("xdm.uri_other_subset", uri=uri, folder=folder))
            continue
        sha1, size = _digest(archive, path)
        subset.documents.append(Document(path, entry.id, sha1, size))
        said_hash, said_size = entry.slot("hash"), entry.slot("size")
        if said_hash and said_hash.lower() != sha1:
            r.fail("XDM-HASH-01", f"{at}{meta} {entry.location}/Slot[@name='hash'] ↔ {at}{path}", M("xdm.hash", said=said_hash, actual=sha1))
        if said_size and said_size != str(size):
            r.fail("XDM-SIZE-01", f"{at}{meta} {entry.location}/Slot[@name='size'] ↔ {at}{path}", M("xdm.size", said=said_size, actual=size))
    for p in rules.check_submission(subset.submission, "xdm"):
        r.problems.append(Problem(p.rule, p.severity, f"{at}{meta} {p.location}", p.message))
    return subset
