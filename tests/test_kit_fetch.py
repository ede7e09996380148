"""``harness kit fetch``: the pinned official kit downloaded, verified and unpacked into the cache,
then used when a target names no kit. Served here by a loopback server from an archive built as
GitHub builds one (one top folder) out of the shared corpus: a good archive, a wrong hash, a
truncated download, a zip slip, content that is not the pinned release."""
import hashlib
import io
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from harness.services import HttpService, Request, Response
from harness_cda.release import RELEASE, FetchError, Release, content_identity, fetch, installed

CORPUS = Path(__file__).parents[2] / "shared" / "corpus" / "ans-testcontenucda"
needs_corpus = pytest.mark.skipif(not (CORPUS / "schematrons").is_dir(), reason="the shared corpus (ans-testcontenucda) is absent")
TOP = "TestContenuCDA-3-0-7cd489b39368809df9bcf2cfef5e5d6354438a02/"


def _archive(extra: dict[str, bytes] | None = None) -> bytes:
    """The corpus's kit folders (and a few examples) zipped under one top folder, as GitHub does."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for part in ("schematrons", "jeuxDeValeurs", "infrastructure"):
            for p in sorted((CORPUS / part).rglob("*")):
                if p.is_file():
                    zf.write(p, TOP + p.relative_to(CORPUS).as_posix())
        for p in sorted((CORPUS / "ExemplesCDA").glob("*.xml"))[:3]:
            zf.write(p, TOP + p.relative_to(CORPUS).as_posix())
        zf.writestr(TOP + "README.md", "le kit\n")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return out.getvalue()


class Releases(HttpService):
    """Serves the archives; ``/cut/...`` announces the whole length and sends half."""

    files: dict[str, bytes] = {}

    def handle(self, request: Request) -> Response:
        name = request.path.rsplit("/", 1)[-1]
        data = self.files.get(name)
        if data is None:
            return Response(404, b"no such release")
        if request.path.startswith("/cut/"):
            return Response(200, data, "application/zip", truncate=len(data) // 2)
        return Response(200, data, "application/zip")


@pytest.fixture(scope="module")
def served():
    good = _archive()
    Releases.files = {"good.zip": good, "slip.zip": _archive({TOP + "schematrons/../../../evil.txt": b"pwned"}),
                      "nokit.zip": zipfile_of({TOP + "README.md": b"x"})}
    with Releases() as svc:
        yield svc, good


def zipfile_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


@pytest.fixture
def kit_home(tmp_path, monkeypatch):
    home = tmp_path / "kits"
    monkeypatch.setenv("HARNESS_KIT_HOME", str(home))
    for name in ("HARNESS_KIT_URL", "HARNESS_KIT_SHA256", "HARNESS_KIT_CONTENT"):
        monkeypatch.delenv(name, raising=False)
    return home


def _corpus_identity() -> str:
    return content_identity(CORPUS)[1]


def _leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir()) if home.exists() else []


def test_the_content_identity_is_gits_own_so_the_pin_can_be_checked_with_git(tmp_path):
    """The pin was read from the official repository with ``git ls-tree``: the same identity
    computed from files on disk must equal what git says of them (paths with accents included)."""
    root = tmp_path / "repo"
    for rel, data in {"schematrons/a.sch": b"<schema/>", "schematrons/include/en-t\u00eate/b.sch": b"x\r\n", "jeuxDeValeurs/J.xml": b"",
                      "infrastructure/cda/x.xsd": b"<xs/>" * 1000, "ExemplesCDA/ignored.xml": b"not a part"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "core.autocrlf=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    listing = subprocess.run([*git, "ls-files", "-s", "-z", "--", "schematrons", "jeuxDeValeurs", "infrastructure"], check=True,
                             capture_output=True).stdout
    rows = sorted((rec.split(b"\t", 1)[1].decode(), rec.split()[1].decode()) for rec in listing.split(b"\0") if rec)
    digest = hashlib.sha256(b"".join(p.encode() + b"\0" + blob.encode() + b"\n" for p, blob in rows)).hexdigest()
    assert content_identity(root) == (4, digest)


@needs_corpus
def test_a_good_archive_is_verified_unpacked_and_used_when_no_kit_is_named(served, kit_home):
    svc, good = served
    wanted = Release(RELEASE.name, RELEASE.commit, svc.base_url + "good.zip", hashlib.sha256(good).hexdigest(), _corpus_identity())
    folder, said = fetch(wanted)
    assert said["fetched"] and said["archive_sha256"] == hashlib.sha256(good).hexdigest() and said["kit_files"] == 2167
    assert folder.parent == kit_home and (folder / "schematrons" / "profils" / "IHE.sch").is_file()
    assert sorted(p.name for p in folder.iterdir()) == ["ExemplesCDA", "infrastructure", "jeuxDeValeurs", "release.json", "schematrons"]
    assert not (folder / "README.md").exists()  # only the kit's folders and its examples
    assert installed(wanted) == folder and json.loads((folder / "release.json").read_text())["content"] == wanted.content
    # asked again: nothing downloaded
    asked = len(svc.journal.exchanges)
    again, said = fetch(wanted)
    assert again == folder and not said["fetched"] and len(svc.journal.exchanges) == asked
    # the kit the CDA collectors take when the target names none
    from harness_cda.kit import Kit

    assert Kit(folder, "test").sha256 == Kit(CORPUS, "test").sha256


@needs_corpus
@pytest.mark.parametrize("case, reason", [
    ("wrong-sha256", "SHA-256"),
    ("truncated", "truncated"),
    ("zip-slip", "evil.txt"),
    ("not-the-release", "not the expected release"),
    ("no-kit", "no schematrons/"),
    ("unreachable", "unreachable"),
    ("not-found", "HTTP 404"),
])
def test_a_bad_download_is_refused_with_its_reason_and_leaves_nothing(served, kit_home, tmp_path, case, reason):
    svc, good = served
    identity = _corpus_identity()
    url = {"truncated": svc.base_url + "cut/good.zip", "zip-slip": svc.base_url + "slip.zip", "no-kit": svc.base_url + "nokit.zip",
           "unreachable": "http://127.0.0.1:9/good.zip", "not-found": svc.base_url + "missing.zip"}.get(case, svc.base_url + "good.zip")
    sha = "0" * 64 if case == "wrong-sha256" else ""
    content = RELEASE.content if case == "not-the-release" else identity  # the corpus is not the whole release (92 files fewer)
    with pytest.raises(FetchError) as exc:
        fetch(Release(RELEASE.name, RELEASE.commit, url, sha, content), deadline=20)
    assert reason in exc.value.message("en"), exc.value.message("en")
    assert exc.value.message("fr") != exc.value.message("en")
    assert _leftovers(kit_home) == [], _leftovers(kit_home)  # no kit, no staging, no download left
    assert installed(Release(RELEASE.name, RELEASE.commit, url, sha, content)) is None
    if case == "truncated":  # what the server sent is what it recorded: half of what it announced
        ex = svc.journal.exchanges[-1]
        assert len(ex.response) == len(good) // 2 and "before the announced length" in exc.value.message("en")
    assert not (tmp_path.parent / "evil.txt").exists() and not (kit_home.parent / "evil.txt").exists()


@needs_corpus
def test_the_command_fetches_then_says_where_and_refuses_in_french_by_default(served, kit_home, capsys, monkeypatch):
    from harness.cli import main

    svc, good = served
    monkeypatch.delenv("HARNESS_LANG", raising=False)
    assert main(["kit", "where"]) == 1
    assert "harness kit fetch" in capsys.readouterr().err
    assert main(["kit", "fetch", "--url", svc.base_url + "good.zip", "--content", _corpus_identity()]) == 0
    out = capsys.readouterr().out
    assert "non épinglé, contenu vérifié" in out and "kit vérifié et installé" in out
    monkeypatch.setenv("HARNESS_KIT_CONTENT", _corpus_identity())
    assert main(["kit", "where"]) == 0 and capsys.readouterr().out.strip().startswith(str(kit_home))
    assert main(["kit", "fetch", "--url", svc.base_url + "good.zip", "--sha256", "f" * 64, "--force"]) == 2
    assert "archive du kit refusée : SHA-256" in capsys.readouterr().err


@needs_corpus
def test_a_target_that_names_no_kit_is_judged_with_the_fetched_one(served, kit_home, tmp_path):
    from tests.harness_run import run_harness

    svc, good = served
    identity = _corpus_identity()
    folder, _ = fetch(Release(RELEASE.name, RELEASE.commit, svc.base_url + "good.zip", "", identity))
    target = tmp_path / "vendor.toml"
    target.write_text(f'[product]\nid = "x"\nname = "X"\nversion = "1.0.0"\n[cda]\ndocuments = "{folder / "ExemplesCDA"}"\n')
    run = run_harness(tmp_path, "--scenario", "cda-kit-xsd", "--target", str(target), "--lang", "en",
                      env={"HARNESS_KIT_HOME": str(kit_home), "HARNESS_KIT_CONTENT": identity})
    assert run.bundle is not None, run.stdout + run.stderr
    [result] = [r for r in run.manifest["results"] if r["scenario"] == "cda-kit-xsd"]
    assert result["verdict"] == "PASS", run.stdout
    assert "no CDA kit given" not in run.stdout
