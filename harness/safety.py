"""The only ways the harness reads untrusted XML and archives.

Everything a vendor sends (documents, messages, archives) and every bundle a verifier
receives goes through :func:`parse_xml` or :class:`SafeArchive`.
"""
from __future__ import annotations

import io
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lxml import etree

from .errors import UnsafeInput

MAX_XML_BYTES = 64 * 1024 * 1024

# A DOCTYPE is never needed by the formats we check (CDA, ebRIM, SVRL, SVS) and is the
# door for XXE, external DTD fetches and entity expansion bombs: refuse it outright.
_DOCTYPE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
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


def parse_xml(data: bytes, *, source: str = "<bytes>", max_bytes: int = MAX_XML_BYTES) -> etree._ElementTree:
    """Parse untrusted XML: no DTD, no entities, no network, bounded size.

    Raises :class:`UnsafeInput` for hostile or malformed input, naming ``source``.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("parse_xml takes bytes")
    if len(data) > max_bytes:
        raise UnsafeInput(
            "xml-too-large",
            f"{source} : document XML trop volumineux ({len(data)} octets, limite {max_bytes})",
            f"{source}: XML document too large ({len(data)} bytes, limit {max_bytes})",
        )
    if _DOCTYPE.search(_as_utf8_probe(bytes(data))):
        raise UnsafeInput(
            "xml-doctype",
            f"{source} : déclaration DOCTYPE/ENTITY refusée (risque XXE ou expansion d'entités)",
            f"{source}: DOCTYPE/ENTITY declaration refused (XXE or entity expansion risk)",
        )
    try:
        tree = etree.parse(io.BytesIO(data), _parser())
    except etree.XMLSyntaxError as exc:
        raise UnsafeInput(
            "xml-malformed",
            f"{source} : XML mal formé : {exc}",
            f"{source}: malformed XML: {exc}",
        ) from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise UnsafeInput(
            "xml-doctype",
            f"{source} : DTD refusée",
            f"{source}: DTD refused",
        )
    return tree


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds for :class:`SafeArchive`; the defaults fit MSSanté XDM archives and bundles."""

    max_entries: int = 10_000
    max_total_bytes: int = 512 * 1024 * 1024
    max_entry_bytes: int = 256 * 1024 * 1024
    max_ratio: float = 200.0


def _refuse(reason: str, fr: str, en: str) -> UnsafeInput:
    return UnsafeInput(reason, fr, en)


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
        raise _refuse(
            "archive-path",
            f"{source} : chemin d'entrée refusé (absolu ou sortant de l'archive) : {name!r}",
            f"{source}: entry path refused (absolute or escaping the archive): {name!r}",
        )


class SafeArchive:
    """A zip archive whose every entry was checked before anything is read.

    Refuses absolute paths, ``..``, backslashes, links, encrypted entries, duplicate names,
    too many entries, too many bytes, and suspicious compression ratios. Reads are bounded
    by the declared sizes, which zipfile checks against the CRC.
    """

    def __init__(self, source: str | Path | bytes, *, limits: ArchiveLimits = ArchiveLimits(), name: str | None = None) -> None:
        self.limits = limits
        self.source = name or (str(source) if not isinstance(source, (bytes, bytearray)) else "<archive>")
        fileobj = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
        try:
            self._zip = zipfile.ZipFile(fileobj)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            fileobj.close()
            raise _refuse(
                "archive-malformed",
                f"{self.source} : archive zip illisible : {exc}",
                f"{self.source}: unreadable zip archive: {exc}",
            ) from None
        try:
            self._entries = self._validate()
        except Exception:
            self.close()
            raise

    def _validate(self) -> dict[str, zipfile.ZipInfo]:
        infos = self._zip.infolist()
        if len(infos) > self.limits.max_entries:
            raise _refuse(
                "archive-entries",
                f"{self.source} : trop d'entrées ({len(infos)}, limite {self.limits.max_entries})",
                f"{self.source}: too many entries ({len(infos)}, limit {self.limits.max_entries})",
            )
        total = 0
        entries: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            _check_name(info.filename, self.source)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise _refuse(
                    "archive-link",
                    f"{self.source} : lien symbolique refusé : {info.filename}",
                    f"{self.source}: symbolic link refused: {info.filename}",
                )
            if info.flag_bits & 0x1:
                raise _refuse(
                    "archive-encrypted",
                    f"{self.source} : entrée chiffrée refusée : {info.filename}",
                    f"{self.source}: encrypted entry refused: {info.filename}",
                )
            if info.filename in entries:
                raise _refuse(
                    "archive-duplicate",
                    f"{self.source} : entrée en double : {info.filename}",
                    f"{self.source}: duplicate entry: {info.filename}",
                )
            if info.file_size > self.limits.max_entry_bytes:
                raise _refuse(
                    "archive-size",
                    f"{self.source} : entrée trop volumineuse : {info.filename} ({info.file_size} octets)",
                    f"{self.source}: entry too large: {info.filename} ({info.file_size} bytes)",
                )
            if info.file_size > 1024 * 1024 and info.file_size > self.limits.max_ratio * max(info.compress_size, 1):
                raise _refuse(
                    "archive-ratio",
                    f"{self.source} : taux de compression suspect (bombe zip ?) : {info.filename}",
                    f"{self.source}: suspicious compression ratio (zip bomb?): {info.filename}",
                )
            total += info.file_size
            if total > self.limits.max_total_bytes:
                raise _refuse(
                    "archive-total",
                    f"{self.source} : taille totale décompressée excessive (> {self.limits.max_total_bytes} octets)",
                    f"{self.source}: total uncompressed size too large (> {self.limits.max_total_bytes} bytes)",
                )
            entries[info.filename] = info
        return entries

    def names(self) -> list[str]:
        """File entries (folders excluded), in archive order."""
        return [n for n, i in self._entries.items() if not i.is_dir()]

    def size(self, name: str) -> int:
        return self._entries[name].file_size

    def read(self, name: str) -> bytes:
        """The bytes of one entry; corruption raises :class:`UnsafeInput` naming the entry."""
        info = self._entries.get(name)
        if info is None:
            raise KeyError(name)
        out = bytearray()
        try:
            with self._zip.open(info) as fh:
                while chunk := fh.read(1024 * 1024):
                    out += chunk
                    if len(out) > info.file_size or len(out) > self.limits.max_entry_bytes:
                        raise _refuse(
                            "archive-size",
                            f"{self.source} : l'entrée {name} dépasse sa taille déclarée",
                            f"{self.source}: entry {name} exceeds its declared size",
                        )
        except UnsafeInput:
            raise
        except Exception as exc:  # BadZipFile (CRC), zlib.error, EOFError: a damaged member
            raise _refuse(
                "archive-corrupt",
                f"{self.source} : entrée {name} corrompue : {exc}",
                f"{self.source}: entry {name} is corrupt: {exc}",
            ) from None
        return bytes(out)

    def close(self) -> None:
        fp = self._zip.fp
        self._zip.close()
        if fp is not None:
            fp.close()

    def __enter__(self) -> "SafeArchive":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
