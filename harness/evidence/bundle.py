"""The sealed evidence bundle: write atomically, verify integrity, open for replay.

Layout of ``<run-id>.zip``::

    manifest.json          run, versions, target (no secrets), scenarios, verdicts,
                           artefact index, and the SHA-256 of every other member
    manifest.sha256        SHA-256 of manifest.json (sha256sum format): the seal
    manifest.p7s           optional: a detached CMS signature of manifest.json (who sealed it)
    artefacts/<sha256>     every recorded artefact, once, named by its content hash
    findings/<scenario>.json   the findings of each scenario, in French and English
    summary.fr.txt / summary.en.txt   the human summary, rendered from the manifest
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

from ..errors import BundleError, UnsafeInput
from .recorder import canonical_json, sha256
from .manifest import FINDINGS, FORMATS, Manifest, manifest_problems, shape_problems
from ..messages import Joined, Localized, catalogue
from ..safety.inputs import MAX_JSON_BYTES, ArchiveLimits, SafeArchive, parse_json
from ..secrets import active as active_scrubber
from .signature import MAX_SIGNATURE, SIGNATURE

M = catalogue(__name__)
MANIFEST = "manifest.json"
SEAL = "manifest.sha256"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# A bundle holds what the harness recorded: documents up to 64 MiB, answers up to 16 MiB.
BUNDLE_LIMITS = ArchiveLimits(max_entries=100_000, max_total_bytes=4 * 1024**3, max_entry_bytes=256 * 1024**2, max_ratio=2000.0)
MAX_SEAL = 1024
ARTEFACTS = "artefacts/"


def _member_bytes(manifest: dict) -> bytes:
    return json.dumps(manifest, sort_keys=True, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"


def write_bundle(path: Path, manifest: Manifest, members: dict[str, bytes | Callable[[], bytes]],
                 sign: Callable[[bytes], bytes] | None = None) -> Path:
    """Write the bundle at ``path`` atomically: a temporary file renamed into place.

    ``members`` maps member names to bytes (or to a function returning them, so large
    artefacts are read one at a time, or None for a member not written). ``manifest.members`` is filled in here. ``sign`` makes
    ``manifest.p7s``, a detached signature of the manifest's bytes (:mod:`harness.evidence.signature`).
    Every member but the artefacts (scrubbed when recorded, and named by their hash) goes
    through the run's scrubber on its way in: the last gate before anything leaves.
    """
    scrubber = active_scrubber()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    hashes: dict[str, str] = {}
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for name in sorted(members):
                data = members[name]
                data = data() if callable(data) else data
                if data is None:  # a member that could not be made (a report whose rendering failed: an incident says so)
                    continue
                if not name.startswith(ARTEFACTS):
                    data = scrubber.bytes(data)
                hashes[name] = sha256(data)
                zf.writestr(zipfile.ZipInfo(name, _ZIP_DATE), data, compress_type=zipfile.ZIP_DEFLATED)
            manifest.members = hashes
            body = scrubber.bytes(_member_bytes(manifest.to_json()))
            zf.writestr(zipfile.ZipInfo(MANIFEST, _ZIP_DATE), body, compress_type=zipfile.ZIP_DEFLATED)
            zf.writestr(zipfile.ZipInfo(SEAL, _ZIP_DATE), f"{sha256(body)}  {MANIFEST}\n".encode())
            if sign is not None:
                zf.writestr(zipfile.ZipInfo(SIGNATURE, _ZIP_DATE), sign(body), compress_type=zipfile.ZIP_DEFLATED)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a bundle is meant to be handed over
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass
class MemberProblem:
    """What is wrong with one member of a bundle."""

    member: str
    message: Localized

    def render(self, lang: str | None = None) -> str:
        return f"{self.member}: {self.message.render(lang)}"

    text = render


@dataclass
class VerifyReport:
    path: Path
    problems: list[MemberProblem] = field(default_factory=list)
    manifest: dict | None = None
    member_count: int = 0
    manifest_bytes: bytes = b""  # what the seal and the signature cover
    signature: bytes | None = None  # manifest.p7s, when the bundle is signed

    @property
    def ok(self) -> bool:
        return not self.problems and self.manifest is not None


def _problem(report: VerifyReport, member: str, message: Localized) -> None:
    report.problems.append(MemberProblem(member, message))


def _read(archive: SafeArchive, name: str, report: VerifyReport) -> bytes | None:
    try:
        return archive.read(name)
    except UnsafeInput as exc:
        _problem(report, name, exc.detail)
        return None


def _sealed_manifest(archive: SafeArchive, names: list[str], report: VerifyReport) -> dict | None:
    """The manifest, once its seal is checked and its format is one this version reads."""
    for required in (MANIFEST, SEAL):
        if required not in names:
            _problem(report, required, M("bundle.required_missing"))
    if MANIFEST not in names or SEAL not in names:
        return None
    if archive.size(MANIFEST) > MAX_JSON_BYTES or archive.size(SEAL) > MAX_SEAL:
        _problem(report, MANIFEST, M("bundle.manifest_too_large", limit=MAX_JSON_BYTES))
        return None
    body, seal = _read(archive, MANIFEST, report), _read(archive, SEAL, report)
    if body is None or seal is None:
        return None
    report.manifest_bytes = body
    expected = seal.decode("ascii", "replace").split()[0] if seal.split() else ""
    if sha256(body) != expected:
        # Either member may be the one that changed: name both.
        _problem(report, MANIFEST, M("bundle.seal_differs"))
        _problem(report, SEAL, M("bundle.seal_mismatch"))
    try:
        manifest = parse_json(body, source=MANIFEST)
    except UnsafeInput as exc:
        _problem(report, MANIFEST, exc.detail)
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("members"), dict):
        _problem(report, MANIFEST, M("bundle.manifest_unreadable", error="not a harness bundle manifest"))
        return None
    if manifest.get("format") not in FORMATS:
        _problem(report, MANIFEST, M("bundle.format", found=str(manifest.get("format")), known=", ".join(FORMATS)))
        return None
    problems = manifest_problems(manifest)
    for problem in problems:
        _problem(report, MANIFEST, problem)
    return None if problems else manifest


def _check_members(archive: SafeArchive, names: list[str], manifest: dict, report: VerifyReport) -> None:
    """Every member the manifest lists is there, unchanged; nothing else is; every indexed artefact is sealed."""
    listed: dict[str, str] = manifest["members"]
    for name, digest in sorted(listed.items()):
        if name not in names:
            _problem(report, name, M("bundle.member_missing"))
            continue
        try:
            actual = archive.sha256(name)  # streamed: a large member never sits in memory
        except UnsafeInput as exc:
            _problem(report, name, exc.detail)
            continue
        if actual != digest:
            _problem(report, name, M("bundle.member_changed"))
        elif name.startswith("artefacts/") and name[len("artefacts/"):] != digest:
            _problem(report, name, M("bundle.artefact_name"))
    for name in names + archive.folders():  # a bundle has no folder entry: one is something added
        if name not in listed and name not in (MANIFEST, SEAL, SIGNATURE):
            _problem(report, name, M("bundle.member_extra"))
    for digest in manifest.get("artefacts", {}):
        if f"artefacts/{digest}" not in listed:
            _problem(report, f"artefacts/{digest}", M("bundle.artefact_unsealed"))


def verify_bundle(path: str | Path) -> VerifyReport:
    """Check a bundle's integrity: every changed, missing or extra member is reported."""
    path = Path(path)
    report = VerifyReport(path)
    try:
        archive = SafeArchive(path, limits=BUNDLE_LIMITS)
    except UnsafeInput as exc:
        _problem(report, path.name, exc.detail)
        return report
    except OSError as exc:
        _problem(report, path.name, M("bundle.unreadable", error=str(exc)))
        return report
    with archive:
        names = archive.names()
        report.member_count = len(names)
        manifest = _sealed_manifest(archive, names, report)
        if SIGNATURE in names:
            if archive.size(SIGNATURE) > MAX_SIGNATURE:
                _problem(report, SIGNATURE, M("bundle.signature_too_large", limit=MAX_SIGNATURE))
            else:
                report.signature = _read(archive, SIGNATURE, report)
        if manifest is not None:
            _check_members(archive, names, manifest, report)
            report.manifest = manifest
    return report


class Bundle:
    """A verified bundle, open for reading artefacts and findings."""

    def __init__(self, path: str | Path) -> None:
        report = verify_bundle(path)
        if not report.ok:
            raise BundleError(M("bundle.not_intact", path=str(path), problems=Joined(tuple(report.problems))))
        self.path = Path(path)
        self.verified = report  # what verify_bundle found: the manifest's bytes, the signature
        self.manifest: dict[str, Any] = report.manifest  # type: ignore[assignment]
        self.record = Manifest.from_json(self.manifest)
        self._archive = SafeArchive(self.path, limits=BUNDLE_LIMITS)

    def read_artefact(self, digest: str) -> bytes:
        return self._archive.read(f"artefacts/{digest}")

    def read_artefact_head(self, digest: str, limit: int) -> bytes:
        """At most ``limit + 1`` bytes of an artefact, decompressed a piece at a time: enough
        to tell whether it holds more than ``limit`` whatever its declared size."""
        out = bytearray()
        for chunk in self._archive.chunks(f"artefacts/{digest}"):
            out += chunk
            if len(out) > limit:
                break
        return bytes(out[: limit + 1])

    def open_artefact(self, digest: str) -> BinaryIO:
        """An artefact as a seekable file, copied a piece at a time to a temporary file
        (a bundle member is compressed: seeking in it would decompress it again and again)."""
        out = tempfile.TemporaryFile()
        try:
            for chunk in self._archive.chunks(f"artefacts/{digest}"):
                out.write(chunk)
        except BaseException:
            out.close()
            raise
        out.seek(0)
        return out

    def read_member(self, name: str) -> bytes:
        return self._archive.read(name) if name in self.manifest["members"] else b""

    def findings(self, scenario: str) -> list[dict]:
        """The findings member of ``scenario``, checked against the format (:class:`BundleError` if not)."""
        name = f"findings/{scenario}.json"
        if name not in self.manifest["members"]:
            return []
        try:
            items = parse_json(self._archive.read(name), source=name)
        except UnsafeInput as exc:
            raise BundleError(exc.detail) from None
        problems = shape_problems(items, FINDINGS, name)
        if problems:
            raise BundleError(M("shape.findings_invalid", problems=Joined(tuple(problems))))
        return items

    def artefacts_labelled(self, label: str) -> Iterable[str]:
        return [d for d, meta in sorted(self.manifest.get("artefacts", {}).items()) if meta.get("label") == label]

    def close(self) -> None:
        self._archive.close()

    def __enter__(self) -> "Bundle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Bundle", "MemberProblem", "VerifyReport", "canonical_json", "verify_bundle", "write_bundle"]
