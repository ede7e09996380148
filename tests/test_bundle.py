"""Sealed bundles: integrity down to the byte, offline replay, atomic writing."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness import Bundle, BundleError, verify_bundle
from harness.evidence.bundle import MANIFEST, SEAL, write_bundle
from harness.cli import main as cli
from harness.evidence.recorder import sha256
from harness.proof.replay import replay_bundle
from harness.running.assembly import assemble
from tests.harness_run import shared_run


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    # the run tests/test_run_e2e.py judges as its serial one: made once for the session
    run = shared_run(tmp_path_factory, "--scenario", "all", "--defect", "version-channel-mismatch")
    assert run.bundle is not None, run.stdout + run.stderr
    return run.bundle


def _members(path):
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _rewrite(path, out, members):
    # stored, not deflated: what verification reads is the members, however the archive holds them
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out


def test_verify_accepts_an_untouched_bundle(bundle, capsys):
    report = verify_bundle(bundle)
    assert report.ok and report.problems == []
    assert cli(["verify", str(bundle)]) == 0
    assert "empreintes conformes" in capsys.readouterr().out


def _groups(names, size=24):
    """The manifest and its seal each alone (every other member is judged through them); the
    other members in groups damaged together, each of which must be named: one verification
    per group instead of one per member (330 of them: 21 s), the same member-by-member proof."""
    seal = [n for n in names if n in (MANIFEST, SEAL)]
    rest = [n for n in names if n not in (MANIFEST, SEAL)]
    return [[n] for n in seal] + [rest[i:i + size] for i in range(0, len(rest), size)]


def test_flipping_one_byte_of_any_member_is_caught_and_named(bundle, tmp_path, capsys):
    members = _members(bundle)
    assert len(members) > 10
    groups = _groups(list(members))
    assert sorted(n for g in groups for n in g) == sorted(members)
    for i, group in enumerate(groups):
        changed = dict(members)
        for name in group:
            data = bytearray(changed[name])
            data[len(data) // 2] ^= 0x01
            changed[name] = bytes(data)
        out = _rewrite(bundle, tmp_path / f"t{i}.zip", changed)
        report = verify_bundle(out)
        assert not report.ok, group
        named = {p.member for p in report.problems}
        assert set(group) <= named, (set(group) - named, named)
        assert cli(["--lang", "en", "verify", str(out)]) == 1
        shown = capsys.readouterr().out
        assert all(name in shown for name in group), [n for n in group if n not in shown]


def test_raw_byte_flips_inside_the_zip_are_caught(bundle, tmp_path):
    raw = bundle.read_bytes()
    with zipfile.ZipFile(bundle) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    for group in _groups(list(infos)):
        damaged = bytearray(raw)
        for name in group:
            info = infos[name]
            # the middle of the member's stored data
            offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.compress_size // 2
            damaged[offset] ^= 0xFF
        path = tmp_path / "raw.zip"
        path.write_bytes(bytes(damaged))
        report = verify_bundle(path)
        assert not report.ok, group
        named = {p.member for p in report.problems}
        assert set(group) <= named, (set(group) - named, named)


def test_missing_and_extra_members_are_reported(bundle, tmp_path):
    members = _members(bundle)
    victim = next(n for n in members if n.startswith("findings/"))
    fewer = _rewrite(bundle, tmp_path / "fewer.zip", {k: v for k, v in members.items() if k != victim})
    assert [(p.member, p.message.render("en")) for p in verify_bundle(fewer).problems] == [(victim, "member missing")]
    more = _rewrite(bundle, tmp_path / "more.zip", dict(members, **{"notes.txt": b"added later"}))
    assert [p.member for p in verify_bundle(more).problems] == ["notes.txt"]
    with pytest.raises(BundleError):
        Bundle(more)


def test_garbage_file_is_reported_not_crashing(tmp_path):
    path = tmp_path / "junk.zip"
    path.write_bytes(b"not a zip at all")
    report = verify_bundle(path)
    assert not report.ok and report.problems[0].member == "junk.zip"


def test_replay_reproduces_every_verdict_offline(bundle, capsys):
    assembly = assemble()
    with Bundle(bundle) as b:
        report = replay_bundle(b, assembly)
    assert report.scenarios == len(b.manifest["results"]) > 0 and report.identical, report.differences
    assert cli(["verify", "--replay", str(bundle)]) == 0
    assert "verdicts identiques" in capsys.readouterr().out


def _reseal(members, out):
    """Re-sign a modified bundle as a forger would: integrity passes, replay must not."""
    manifest = json.loads(members["manifest.json"])
    for name in manifest["members"]:
        manifest["members"][name] = sha256(members[name])
    body = json.dumps(manifest, sort_keys=True, ensure_ascii=False, indent=2).encode() + b"\n"
    members = dict(members, **{"manifest.json": body, SEAL: f"{sha256(body)}  manifest.json\n".encode()})
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out


def test_replay_detects_a_verdict_that_does_not_follow_from_the_artefacts(bundle, tmp_path, capsys):
    members = _members(bundle)
    manifest = json.loads(members["manifest.json"])
    for r in manifest["results"]:
        if r["scenario"] == "version-same-in-channels":
            assert r["verdict"] == "FAIL"
            r["verdict"] = "PASS"
    members["manifest.json"] = json.dumps(manifest).encode()
    forged = _reseal(members, tmp_path / "forged.zip")
    assert verify_bundle(forged).ok
    assert cli(["--lang", "en", "verify", "--replay", str(forged)]) == 1
    out = capsys.readouterr().out
    assert "version-same-in-channels: PASS -> FAIL" in out


def test_replay_detects_an_altered_artefact_consistent_with_its_hash(bundle, tmp_path):
    members = _members(bundle)
    manifest = json.loads(members["manifest.json"])
    result = next(r for r in manifest["results"] if r["scenario"] == "version-same-in-channels")
    api = result["inputs"]["api.about"]
    doc = json.loads(members[f"artefacts/{api}"])
    doc["version"] = "3.2.1"  # a forger "fixes" the API answer
    new = json.dumps(doc).encode()
    digest = sha256(new)
    del members[f"artefacts/{api}"]
    members[f"artefacts/{digest}"] = new
    text = json.dumps(manifest).replace(api, digest)
    manifest = json.loads(text)
    manifest["members"][f"artefacts/{digest}"] = digest
    manifest["artefacts"][digest]["size"] = len(new)
    members["manifest.json"] = json.dumps(manifest).encode()
    forged = _reseal(members, tmp_path / "forged2.zip")
    assert verify_bundle(forged).ok
    assembly = assemble()
    with Bundle(forged) as b:
        report = replay_bundle(b, assembly)
    assert {d.scenario for d in report.differences} >= {"version-same-in-channels"}


def test_replay_makes_no_network_call(bundle, monkeypatch):
    import socket

    from harness.proof.replay import NetworkDisabled, no_network

    original = socket.create_connection
    with no_network():
        with pytest.raises(NetworkDisabled):
            socket.create_connection(("127.0.0.1", 9))
        with pytest.raises(NetworkDisabled):
            socket.socket().connect(("127.0.0.1", 9))
    assert socket.create_connection is original  # restored after the replay


def test_a_failed_write_leaves_nothing_under_the_final_name(tmp_path):
    def explode():
        raise RuntimeError("disk full")

    target = tmp_path / "run.zip"
    with pytest.raises(RuntimeError):
        write_bundle(target, {"format": "harness-bundle/1"}, {"a": b"1", "b": explode})
    assert list(tmp_path.iterdir()) == []


KILLED_WRITER = """
import sys, time
from pathlib import Path
from harness.evidence.bundle import write_bundle
def slow():
    print("writing", flush=True)
    time.sleep(30)
    return b"x"
write_bundle(Path(sys.argv[1]), {"format": "harness-bundle/1"}, {"a": b"1" * 100000, "b": slow})
"""


def test_a_killed_run_never_leaves_a_half_bundle_under_the_final_name(tmp_path):
    target = tmp_path / "run.zip"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not target.exists()
    leftovers = list(tmp_path.iterdir())
    assert leftovers and all(p.name.startswith(".run.zip.") and p.name.endswith(".partial") for p in leftovers)


FORMAT_1 = Path(__file__).parents[1] / "fixtures" / "bundles" / "demo-all-format1.zip"


def test_a_bundle_of_the_previous_format_still_verifies_and_replays(capsys):
    with zipfile.ZipFile(FORMAT_1) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["format"] == "harness-bundle/1"
    names = {name for r in manifest["results"] for name in r["inputs"]}
    assert "fhir-live/01.exchange" in names and "cda-live/001.exchange" in names  # the names of that format
    assert cli(["--lang", "en", "verify", "--replay", str(FORMAT_1)]) == 0
    out = capsys.readouterr().out
    assert "Format: harness-bundle/1 (earlier version; replayed with today's input names)" in out
    assert "Offline replay: 19 scenario(s), identical verdicts." in out


FORMAT_2 = Path(__file__).parents[1] / "fixtures" / "bundles" / "demo-all-format2.zip"


@pytest.mark.slow
def test_a_bundle_written_before_the_reports_verifies_replays_and_gets_its_reports(tmp_path, capsys):
    with zipfile.ZipFile(FORMAT_2) as zf:
        assert json.loads(zf.read("manifest.json"))["format"] == "harness-bundle/2"
        assert not any(n.startswith("reports/") for n in zf.namelist())
    assert cli(["--lang", "en", "verify", "--replay", str(FORMAT_2)]) == 0
    out = capsys.readouterr().out
    assert "Format: harness-bundle/2 (earlier version" in out and "Offline replay: 54 scenario(s), identical verdicts." in out
    assert cli(["--lang", "en", "report", str(FORMAT_2), "--out", str(tmp_path)]) == 0
    html = (tmp_path / "demo-all-format2.html").read_text(encoding="utf-8")
    assert html.count('class="requirement"') == 37 and hashlib.sha256(FORMAT_2.read_bytes()).hexdigest() in html
    assert (tmp_path / "demo-all-format2.coverage.xlsx").stat().st_size > 0


def test_an_unknown_bundle_format_is_named(tmp_path):
    members = _members(FORMAT_1)
    manifest = json.loads(members["manifest.json"])
    manifest["format"] = "harness-bundle/9"
    members["manifest.json"] = json.dumps(manifest).encode()
    report = verify_bundle(_reseal(members, tmp_path / "future.zip"))
    assert [p.text("en") for p in report.problems] == [
        "manifest.json: evidence bundle format harness-bundle/9 unknown to this version (formats read: harness-bundle/1, harness-bundle/2, harness-bundle/3)"]
