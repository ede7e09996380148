"""The only ways the harness reads untrusted XML and archives.

Everything a vendor sends (documents, messages, archives) and every bundle a verifier
receives goes through :func:`parse_xml` or :class:`SafeArchive`.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Iterable, Iterator

from lxml import etree

from ..errors import UnsafeInput
from ..messages import Message, catalogue

M = catalogue(__name__)

MAX_XML_BYTES = 64 * 1024 * 1024
MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_JSON_DEPTH = 64

# A DOCTYPE is never needed by the formats we check (CDA, ebRIM, SVRL, SVS) and is the
# door for XXE, external DTD fetches and entity expansion bombs: refuse it outright. It can
# only stand in the prolog (before the root element), so only the prolog is looked at: the
# word in a comment or a text of the document is no declaration.
_PROLOG_ITEM = re.compile(rb"\s+|<\?.*?\?>|<!--.*?-->", re.DOTALL)
_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def _parser(recover: bool = False) -> etree.XMLParser:
    return etree.XMLParser(
        recover=recover,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        # a level-1 CDA carries its PDF as one base64 text node: over 10 MB (libxml2's limit
        # without this option) for a PDF of 7.5 MB. What the option lifts is bounded here
        # otherwise: the whole input (max_bytes), entities (no DTD is ever read), and the
        # depth libxml2 still caps (2048 levels)
        huge_tree=True,
        remove_blank_text=False,
    )


def _as_utf8_probe(data: bytes) -> bytes:
    """Bytes in which a DOCTYPE can be found whatever the declared 8/16-bit encoding."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(data) > 1 and b"\x00" in data[:4]):
        for enc in ("utf-16", "utf-16-le", "utf-16-be"):
            try:
                return data.decode(enc).encode("utf-8")
            except UnicodeDecodeError:
                continue
    return data


def _declares_dtd(data: bytes) -> bool:
    """Whether the prolog (declaration, comments, processing instructions) holds a DOCTYPE."""
    pos = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    while m := _PROLOG_ITEM.match(data, pos):
        pos = m.end()
    return _DECLARATION.match(data, pos) is not None


def parse_xml(data: bytes, *, source: str = "<bytes>", max_bytes: int = MAX_XML_BYTES, recover: bool = False) -> etree._ElementTree:
    """Parse untrusted XML: no DTD, no entities, no network, bounded size.

    Raises :class:`UnsafeInput` for hostile or malformed input, naming ``source``.
    ``recover``: read what libxml2's recovering parser makes of malformed XML (an
    undeclared prefix, say) instead of refusing it, to report everything else it says;
    the caller says it was malformed. A DTD is refused all the same.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("parse_xml takes bytes")
    if len(data) > max_bytes:
        raise UnsafeInput("xml-too-large", M("safety.xml_too_large", limit=max_bytes, size=len(data), source=source))
    if _declares_dtd(_as_utf8_probe(bytes(data))):
        raise UnsafeInput("xml-doctype", M("safety.xml_doctype", source=source))
    try:
        tree = etree.parse(io.BytesIO(data), _parser(recover))
        if tree.getroot() is None:
            raise etree.XMLSyntaxError("nothing readable", None, 0, 0)
    except etree.XMLSyntaxError as exc:
        raise UnsafeInput("xml-malformed", M("safety.xml_malformed", error=str(exc), source=source)) from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise UnsafeInput("xml-doctype", M("safety.xml_dtd", source=source))
    return tree


MAX_XML_STREAM_BYTES = 4 * 1024 * 1024 * 1024
_PROLOG_WAIT = 1024 * 1024  # bytes at most held before the root element is seen


def _prolog_read(head: bytes) -> bool:
    """Whether ``head`` shows everything up to the root element (or a DOCTYPE): nothing of the
    prolog is left cut at its end."""
    data = _as_utf8_probe(head)
    pos = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    while m := _PROLOG_ITEM.match(data, pos):
        pos = m.end()
    rest = data[pos:pos + 9]
    return len(rest) >= 9 or (rest[:1] == b"<" and rest[:2] not in (b"<!", b"<?"))


def iter_xml(chunks: Iterable[bytes], *, tags: Iterable[str], source: str = "<stream>", max_bytes: int = MAX_XML_STREAM_BYTES) -> Iterator[etree._Element]:
    """Stream untrusted XML too large to hold whole (a spreadsheet's million rows): each element
    named in ``tags`` (``{namespace}name``) as soon as it ends, then cleared with what came before
    it, so that memory holds about one at a time. The rules of :func:`parse_xml`: no DTD, no
    entity, no network, at most ``max_bytes``; :class:`UnsafeInput` naming ``source`` otherwise.
    ``chunks``: the bytes a piece at a time (:meth:`SafeArchive.chunks`, a file read in blocks)."""
    parser = etree.XMLPullParser(events=("end",), tag=list(tags), resolve_entities=False, no_network=True, load_dtd=False,
                                 dtd_validation=False, huge_tree=True, remove_blank_text=False)
    head, checked, total = b"", False, 0

    def events() -> Iterator[etree._Element]:
        for _, el in parser.read_events():
            yield el
            el.clear(keep_tail=True)
            parent = el.getparent()
            while parent is not None and el.getprevious() is not None:
                del parent[0]

    try:
        for chunk in chunks:
            total += len(chunk)
            if total > max_bytes:
                raise UnsafeInput("xml-too-large", M("safety.xml_too_large", limit=max_bytes, size=total, source=source))
            if not checked:
                head += chunk
                if not _prolog_read(head) and len(head) < _PROLOG_WAIT:
                    continue
                if _declares_dtd(_as_utf8_probe(head)):
                    raise UnsafeInput("xml-doctype", M("safety.xml_doctype", source=source))
                checked, chunk, head = True, head, b""
            parser.feed(chunk)
            yield from events()
        if not checked:
            if _declares_dtd(_as_utf8_probe(head)):
                raise UnsafeInput("xml-doctype", M("safety.xml_doctype", source=source))
            parser.feed(head)
            yield from events()
        root = parser.close()
        yield from events()
    except etree.XMLSyntaxError as exc:
        raise UnsafeInput("xml-malformed", M("safety.xml_malformed", error=str(exc), source=source)) from None
    if root is not None and (root.getroottree().docinfo.doctype or root.getroottree().docinfo.internalDTD is not None):
        raise UnsafeInput("xml-doctype", M("safety.xml_dtd", source=source))


def parse_json(data: bytes | str, *, source: str = "<json>", max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse untrusted JSON: bounded size, bounded nesting, never a RecursionError.

    Raises :class:`UnsafeInput` for malformed or hostile input, naming ``source``.
    """
    if len(data) > max_bytes:
        raise UnsafeInput("json-too-large", M("safety.json_too_large", source=source, size=len(data), limit=max_bytes))
    try:
        value = json.loads(data)
    except RecursionError:
        raise UnsafeInput("json-too-deep", M("safety.json_too_deep", source=source, limit=max_depth)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnsafeInput("json-malformed", M("safety.json_malformed", source=source, error=str(exc)[:200])) from None
    stack = [(value, 1)]
    while stack:  # counted without recursion: the code that reads the value next may recurse
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > max_depth:
                raise UnsafeInput("json-too-deep", M("safety.json_too_deep", source=source, limit=max_depth))
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return value


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds for :class:`SafeArchive`; the defaults fit MSSanté XDM archives and bundles."""

    max_entries: int = 10_000
    max_total_bytes: int = 512 * 1024 * 1024
    max_entry_bytes: int = 256 * 1024 * 1024
    max_ratio: float = 200.0


def _refuse(reason: str, detail: Message) -> UnsafeInput:
    return UnsafeInput(reason, detail)


def _check_name(name: str, source: str) -> None:
    bad = (
        not name
        or "\x00" in name
        or "\\" in name
        or name.startswith("/")
        or re.match(r"^[A-Za-z]:", name) is not None
        or any(part == ".." for part in PurePosixPath(name).parts)
    )
    if bad:
        raise _refuse("archive-path", M("safety.archive_path", name=name, source=source))


class SafeArchive:
    """A zip archive whose every entry was checked before anything is read.

    Refuses absolute paths, ``..``, backslashes, links, encrypted entries, duplicate names,
    too many entries, too many bytes, and suspicious compression ratios. Reads are bounded
    by the declared sizes, which zipfile checks against the CRC.
    """

    def __init__(self, source: str | Path | bytes | BinaryIO, *, limits: ArchiveLimits = ArchiveLimits(), name: str | None = None) -> None:
        """``source``: a path, the bytes, or a seekable binary file (which the archive then
        owns and closes): read from a file, an archive is never held whole in memory."""
        self.limits = limits
        is_file = hasattr(source, "read") and hasattr(source, "seek")
        self.source = name or ("<archive>" if is_file or isinstance(source, (bytes, bytearray)) else str(source))
        if is_file:
            fileobj = source
        else:
            fileobj = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
        try:
            self._zip = zipfile.ZipFile(fileobj)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            fileobj.close()
            raise _refuse("archive-malformed", M("safety.archive_malformed", error=str(exc), source=self.source)) from None
        try:
            self._entries = self._validate()
        except Exception:
            self.close()
            raise

    def _validate(self) -> dict[str, zipfile.ZipInfo]:
        infos = self._zip.infolist()
        if len(infos) > self.limits.max_entries:
            raise _refuse("archive-entries", M("safety.archive_entries", count=len(infos), limit=self.limits.max_entries, source=self.source))
        total = 0
        entries: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            _check_name(info.filename, self.source)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise _refuse("archive-link", M("safety.archive_link", name=info.filename, source=self.source))
            if info.flag_bits & 0x1:
                raise _refuse("archive-encrypted", M("safety.archive_encrypted", name=info.filename, source=self.source))
            if info.filename in entries:
                raise _refuse("archive-duplicate", M("safety.archive_duplicate", name=info.filename, source=self.source))
            if info.is_dir() and (info.file_size or info.compress_size):
                raise _refuse("archive-hidden", M("safety.archive_hidden", name=info.filename, source=self.source))
            if info.file_size > self.limits.max_entry_bytes:
                raise _refuse("archive-size", M("safety.archive_size", name=info.filename, size=info.file_size, source=self.source))
            if info.file_size > 1024 * 1024 and info.file_size > self.limits.max_ratio * max(info.compress_size, 1):
                raise _refuse("archive-ratio", M("safety.archive_ratio", name=info.filename, source=self.source))
            total += info.file_size
            if total > self.limits.max_total_bytes:
                raise _refuse("archive-total", M("safety.archive_total", limit=self.limits.max_total_bytes, source=self.source))
            entries[info.filename] = info
        return entries

    def names(self) -> list[str]:
        """File entries (folders excluded), in archive order."""
        return [n for n, i in self._entries.items() if not i.is_dir()]

    def folders(self) -> list[str]:
        """Folder entries (which hold no data: one that does is refused)."""
        return [n for n, i in self._entries.items() if i.is_dir()]

    def size(self, name: str) -> int:
        return self._entries[name].file_size

    def chunks(self, name: str, size: int = 1024 * 1024) -> Iterator[bytes]:
        """The bytes of one entry, a piece at a time (memory stays bounded whatever its size);
        corruption or more bytes than declared raises :class:`UnsafeInput` naming the entry."""
        info = self._entries.get(name)
        if info is None:
            raise KeyError(name)
        read = 0
        try:
            with self._zip.open(info) as fh:
                while chunk := fh.read(size):
                    read += len(chunk)
                    if read > info.file_size or read > self.limits.max_entry_bytes:
                        raise _refuse("archive-size", M("safety.archive_overrun", name=name, source=self.source))
                    yield chunk
        except UnsafeInput:
            raise
        except Exception as exc:  # BadZipFile (CRC), zlib.error, EOFError: a damaged member
            raise _refuse("archive-corrupt", M("safety.archive_corrupt", error=str(exc), name=name, source=self.source)) from None

    def read(self, name: str) -> bytes:
        """The bytes of one entry (see :meth:`chunks`)."""
        return b"".join(self.chunks(name))

    def sha256(self, name: str) -> str:
        """The SHA-256 of one entry, computed as it is read."""
        digest = hashlib.sha256()
        for chunk in self.chunks(name):
            digest.update(chunk)
        return digest.hexdigest()

    def close(self) -> None:
        fp = self._zip.fp
        self._zip.close()
        if fp is not None:
            fp.close()

    def __enter__(self) -> "SafeArchive":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
