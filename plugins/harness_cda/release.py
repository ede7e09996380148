"""The official CDA kit release the harness is pinned to: fetched, verified and unpacked into the
user's cache (``harness kit fetch``), and used when a target names no kit.

The pin (:data:`RELEASE`) is the ANS repository's own commit, the address of its archive, and the
identity of its content: the SHA-256 of the sorted lines ``path NUL git-blob-id LF`` of every file
of ``schematrons/``, ``jeuxDeValeurs/`` and ``infrastructure/`` at that commit, read from the
repository itself (``git ls-tree -r -z 7cd489b… -- schematrons jeuxDeValeurs infrastructure``). Any
copy of those files, whatever archive brought them, has that identity; anyone can recompute it
with git. The archive's own SHA-256 is checked when known: GitHub builds its archives on demand and
does not promise the same bytes twice, and no machine here reaches it, so the pinned value is
empty (a setting, ``--sha256`` or ``HARNESS_KIT_SHA256``), never a guess.

What is fetched is untrusted: one download within a total deadline, a size bound and a read
timeout; the archive read only through :class:`harness.SafeArchive` (no absolute path, no
``..``, no link, bounded sizes and ratios); unpacked into a staging folder beside the
destination, verified there, and moved into place whole, or removed: nothing half-written is
ever taken for a kit.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness import ArchiveLimits, HarnessError, SafeArchive, UnsafeInput, atomic_write, catalogue

from .local import KIT_PARTS, cache_root

M = catalogue(__name__)


@dataclass(frozen=True)
class Release:
    name: str
    commit: str
    url: str
    archive_sha256: str  # "" when not confirmed
    content: str  # the content identity (module docstring)


RELEASE = Release(
    name="TestContenuCDA-3-0",
    commit="7cd489b39368809df9bcf2cfef5e5d6354438a02",
    url="https://github.com/ansforge/TestContenuCDA-3-0/archive/7cd489b39368809df9bcf2cfef5e5d6354438a02.zip",
    archive_sha256="",
    content="2d8ed6d5fd5eb499a32480f6122435818915cd5fd344d44bba1c5129fe11936d",  # 2,259 files at the commit
)
KEPT = (*KIT_PARTS, "ExemplesCDA")  # what is unpacked: the kit's parts and its official examples
MAX_ARCHIVE = 512 * 1024 * 1024  # bytes of the download (the whole repository's archive, engine and stylesheets included)
LIMITS = ArchiveLimits(max_entries=20_000, max_total_bytes=2 * 1024 * 1024 * 1024, max_entry_bytes=256 * 1024 * 1024)
DEADLINE = 600.0  # seconds for the whole download
READ_TIMEOUT = 30.0  # seconds without a byte
MARKER = "release.json"


class FetchError(HarnessError):
    pass


def home() -> Path:
    """Where fetched kits live: ``HARNESS_KIT_HOME``, else the harness's cache."""
    return Path(os.environ.get("HARNESS_KIT_HOME") or cache_root() / "cda-kit-release")


def pinned() -> Release:
    """:data:`RELEASE`, with what the environment overrides (``HARNESS_KIT_URL``,
    ``HARNESS_KIT_SHA256``, ``HARNESS_KIT_CONTENT``)."""
    env = os.environ
    return Release(RELEASE.name, RELEASE.commit, env.get("HARNESS_KIT_URL") or RELEASE.url,
                   (env.get("HARNESS_KIT_SHA256") or RELEASE.archive_sha256).lower(), (env.get("HARNESS_KIT_CONTENT") or RELEASE.content).lower())


def content_identity(root: Path) -> tuple[int, str]:
    """(files, identity) of the kit parts under ``root``: the SHA-256 of the sorted lines
    ``path NUL git-blob-id LF`` (git's blob id: SHA-1 of ``blob SIZE NUL`` and the bytes)."""
    rows = []
    for part in KIT_PARTS:
        for p in (root / part).rglob("*") if (root / part).is_dir() else ():
            if p.is_file():
                blob = hashlib.sha1(f"blob {p.stat().st_size}\0".encode())  # noqa: S324 (git's own identifier, not a security digest)
                with open(p, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        blob.update(chunk)
                rows.append((p.relative_to(root).as_posix(), blob.hexdigest()))
    digest = hashlib.sha256()
    for path, blob_id in sorted(rows):
        digest.update(path.encode("utf-8") + b"\0" + blob_id.encode() + b"\n")
    return len(rows), digest.hexdigest()


def installed(release: Release | None = None) -> Path | None:
    """The fetched kit of ``release`` (default: the pinned one), when its folder is there and
    says it was verified as that release; None otherwise."""
    release = release or pinned()
    folder = home() / release.content[:16]
    try:
        said = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return folder if said.get("content") == release.content and (folder / "schematrons").is_dir() else None


def fetch(release: Release | None = None, *, force: bool = False, deadline: float = DEADLINE, progress=None) -> tuple[Path, dict]:
    """Download, verify and unpack ``release``; (its folder, what was done). Raises
    :class:`FetchError` with the reason; nothing is left behind but the cache's own folder."""
    import requests

    release = release or pinned()
    present = installed(release)
    if present is not None and not force:
        return present, {"fetched": False, **json.loads((present / MARKER).read_text(encoding="utf-8"))}
    if not release.url.startswith(("https://", "http://")):
        raise FetchError(M("fetch.url", url=release.url))
    base = home()
    base.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=base) as tmp:
        archive = Path(tmp) / "kit.zip"
        digest, size = hashlib.sha256(), 0
        try:
            with requests.get(release.url, stream=True, timeout=(min(30.0, deadline), READ_TIMEOUT), allow_redirects=True,
                              headers={"User-Agent": "ehealth-conformity-harness (kit fetch)"}) as res:
                if res.status_code != 200:
                    raise FetchError(M("fetch.status", url=release.url, status=res.status_code))
                if not res.url.startswith("https://") and release.url.startswith("https://"):
                    raise FetchError(M("fetch.downgraded", url=res.url))
                declared = res.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > MAX_ARCHIVE:
                    raise FetchError(M("fetch.too_large", size=int(declared), limit=MAX_ARCHIVE))
                with open(archive, "wb") as out:
                    for chunk in res.iter_content(1 << 20):
                        size += len(chunk)
                        if size > MAX_ARCHIVE:
                            raise FetchError(M("fetch.too_large", size=size, limit=MAX_ARCHIVE))
                        if time.monotonic() - started > deadline:
                            raise FetchError(M("fetch.deadline", seconds=f"{deadline:g}", got=size))
                        digest.update(chunk)
                        out.write(chunk)
                        if progress is not None:
                            progress(size, int(declared) if declared and declared.isdigit() else None)
                if declared and declared.isdigit() and size != int(declared):
                    raise FetchError(M("fetch.truncated", got=size, declared=int(declared)))
        except requests.exceptions.ChunkedEncodingError as exc:  # the connection ended before the announced length
            raise FetchError(M("fetch.truncated_at", got=size, reason=type(exc).__name__)) from None
        except requests.RequestException as exc:
            raise FetchError(M("fetch.unreachable", url=release.url, reason=type(exc).__name__)) from None
        sha256 = digest.hexdigest()
        if release.archive_sha256 and sha256 != release.archive_sha256:
            raise FetchError(M("fetch.sha256", expected=release.archive_sha256, got=sha256))
        staging = Path(tmp) / "kit"
        try:
            files = _unpack(archive, staging)
        except UnsafeInput as exc:
            raise FetchError(M("fetch.unsafe", reason=exc.detail)) from None
        count, content = content_identity(staging)
        if content != release.content:
            raise FetchError(M("fetch.content", expected=release.content, got=content, files=count))
        said = {"release": release.name, "commit": release.commit, "url": release.url, "archive_sha256": sha256, "archive_bytes": size,
                "content": content, "kit_files": count, "unpacked_files": files}
        atomic_write(staging / MARKER, json.dumps(said, indent=2).encode())
        folder = base / release.content[:16]
        if folder.exists():  # forced: the old copy goes, the new one takes its place whole
            shutil.rmtree(folder)
        staging.rename(folder)
    return folder, {"fetched": True, **said}


def _unpack(archive: Path, into: Path) -> int:
    """The kit's folders of ``archive`` (under its one top folder, as GitHub archives are) into
    ``into``, through the safe archive reader; the number of files written."""
    written = 0
    with SafeArchive(archive, limits=LIMITS, name=archive.name) as zf:
        names = zf.names()
        tops = {n.split("/", 1)[0] for n in names + zf.folders()}
        prefix = (tops.pop() + "/") if len(tops) == 1 and all("/" in n for n in names) else ""
        for name in names:
            rel = name[len(prefix):] if name.startswith(prefix) else name
            if rel.split("/", 1)[0] not in KEPT:
                continue
            target = into / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as out:
                for chunk in zf.chunks(name):
                    out.write(chunk)
            written += 1
    if not (into / "schematrons").is_dir():
        raise FetchError(M("fetch.not_a_kit"))
    return written


KIT_ENV = "HARNESS_CDA_KIT"


def default_kit() -> Path | None:
    """The kit used when a target names none: ``HARNESS_CDA_KIT``, else the fetched release."""
    root = os.environ.get(KIT_ENV)
    return Path(root) if root else installed()
