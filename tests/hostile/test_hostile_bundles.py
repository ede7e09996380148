"""Hostile bundles: whatever a forger or a broken disk hands to a verifier ends in a clear
problem or difference, named, never a traceback; memory stays bounded on huge members."""
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from harness import verify_bundle
from harness.evidence.bundle import SEAL
from harness.cli import main as cli
from harness.evidence.recorder import sha256
from harness.evidence.manifest import manifest_problems
from tests.harness_run import run_harness


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    run = run_harness(tmp_path_factory.mktemp("hb"), "--scenario", "version", "--scenario", "ins", "--defect", "version-channel-mismatch")
    assert run.bundle is not None, run.stdout + run.stderr
    return run.bundle


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _write(members: dict, out: Path, extra: list[zipfile.ZipInfo] = ()) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for info, data in extra:
            zf.writestr(info, data)
    return out


# runs the harness command and prints its own peak memory (KiB): VmHWM belongs to the process
# image, where ru_maxrss would count the parent's pages shared before exec
PEAK = ("import re, sys\nfrom harness.cli import main\nrc = main(sys.argv[1:])\n"
        "print('PEAK', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\nsys.exit(rc)")
DEEP = "[" * 5000 + '"x"' + "]" * 5000  # deeper than Python's own recursion limit


def _reseal(members: dict, manifest, out: Path) -> Path:
    """What a forger does: change, re-hash every member, re-seal. Integrity then holds.
    A value "__DEEP__" in the manifest becomes :data:`DEEP` in its text."""
    if isinstance(manifest, dict) and isinstance(manifest.get("members"), dict):
        for name in manifest["members"]:
            if name in members:
                manifest["members"][name] = sha256(members[name])
    body = json.dumps(manifest, sort_keys=True, ensure_ascii=False).replace('"__DEEP__"', DEEP).encode() + b"\n"
    return _write(dict(members, **{"manifest.json": body, SEAL: f"{sha256(body)}  manifest.json\n".encode()}), out)


def _verify(capsys, *args) -> tuple[int, str]:
    code = cli(["--lang", "en", "verify", *args])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out + out.err


def _nested(depth: int):
    value = "x"
    for _ in range(depth):
        value = [value]
    return value


# -- the manifest ---------------------------------------------------------------------------


@pytest.mark.parametrize("change, expected", [
    (lambda m: m.__setitem__("target", {"product": "__DEEP__"}), "manifest.json: manifest.json: JSON nested more than 64 levels deep, refused"),
    (lambda m: m.__setitem__("target", {"product": _nested(100)}), "manifest.json: manifest.json: JSON nested more than 64 levels deep, refused"),
    (lambda m: m["results"][0].pop("verdict"), "manifest.json: $.results[0]: key 'verdict' missing"),
    (lambda m: m["results"][0].__setitem__("checks", [{"name": "x", "verdict": "PASS", "assertions": "many", "reasons": [], "findings": 0}]),
     "manifest.json: $.results[0].checks[0].assertions: an integer expected"),
    (lambda m: m["results"][0]["inputs"].__setitem__("ghost", "f" * 64),
     "input names an artefact missing from the index (" + "f" * 64 + ")"),
    (lambda m: m["results"][0]["inputs"].__setitem__("ghost", "not-a-digest"), "$.results[0].inputs['ghost']: a SHA-256 digest expected"),
    (lambda m: m["results"][0].__setitem__("skip", True), "manifest.json: $.results[0]: unknown key 'skip'"),
    (lambda m: m["results"][0].__setitem__("verdict", "MAYBE"), "$.results[0].verdict: value 'MAYBE' not one of"),
    (lambda m: m.__setitem__("results", {"not": "a list"}), "manifest.json: $.results: a list expected"),
    (lambda m: m.__setitem__("format", "harness-bundle/9"), "evidence bundle format harness-bundle/9 unknown to this version"),
])
def test_a_resealed_manifest_that_is_not_one_is_named_not_a_traceback(bundle, tmp_path, capsys, change, expected):
    members = _members(bundle)
    manifest = json.loads(members["manifest.json"])
    change(manifest)
    forged = _reseal(members, manifest, tmp_path / "forged.zip")
    code, out = _verify(capsys, "--replay", str(forged))
    assert code == 1 and expected in out, out


def test_nested_findings_are_a_named_difference_in_replay(bundle, tmp_path, capsys):
    members = _members(bundle)
    manifest = json.loads(members["manifest.json"])
    name = "findings/version-same-in-channels.json"
    members[name] = ("[" + DEEP + "]").encode()
    code, out = _verify(capsys, "--replay", str(_reseal(members, manifest, tmp_path / "f.zip")))
    assert code == 1
    assert "version-same-in-channels: FAIL -> FAIL (findings/version-same-in-channels.json: JSON nested more than 64 levels deep, refused)" in out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=30))
def test_any_json_value_as_a_manifest_gives_problems_not_an_exception(value):
    problems = manifest_problems(value)
    assert problems and all(p.render("en") for p in problems)


# -- members ----------------------------------------------------------------------------------


def test_a_folder_entry_hiding_data_and_an_empty_one_are_both_reported(bundle, tmp_path, capsys):
    members = _members(bundle)
    hidden = zipfile.ZipInfo("artefacts/")
    hidden.external_attr = 0o40755 << 16 | 0x10
    code, out = _verify(capsys, str(_write(members, tmp_path / "hidden.zip", [(hidden, b"smuggled payload")])))
    assert code == 1 and "a folder entry carries (hidden) data: artefacts/" in out
    empty = zipfile.ZipInfo("extra/")
    empty.external_attr = 0o40755 << 16 | 0x10
    code, out = _verify(capsys, str(_write(members, tmp_path / "empty.zip", [(empty, b"")])))
    assert code == 1 and "extra/: extra member, not in the manifest" in out


@pytest.mark.slow
def test_verify_of_a_sealed_bundle_with_a_huge_member_keeps_memory_bounded(bundle, tmp_path):
    """A member of 200 MiB is hashed as it is read: the verifier's memory stays far below it."""
    big = tmp_path / "big.bin"
    chunk = bytes(range(256)) * 4096
    digest = hashlib.sha256()
    with big.open("wb") as fh:
        for _ in range(200):
            fh.write(chunk)
            digest.update(chunk)
    name = "artefacts/" + digest.hexdigest()
    members = _members(bundle)
    manifest = json.loads(members["manifest.json"])
    manifest["artefacts"][digest.hexdigest()] = {"size": big.stat().st_size, "media_type": "application/octet-stream", "label": "big"}
    manifest["members"][name] = digest.hexdigest()
    body = json.dumps(manifest, sort_keys=True).encode()
    path = tmp_path / "huge.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for member, data in dict(members, **{"manifest.json": body, SEAL: f"{sha256(body)}  manifest.json\n".encode()}).items():
            zf.writestr(member, data)
        zf.write(big, name)  # from the file: the test itself never holds it whole
    big.unlink()
    proc = subprocess.run([sys.executable, "-c", PEAK, "--lang", "en", "verify", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "hashes match" in proc.stdout, proc.stdout + proc.stderr
    peak_mib = int(proc.stdout.rsplit("PEAK ", 1)[1]) / 1024
    assert peak_mib < 120, f"peak {peak_mib:.0f} MiB"  # measured: about 60 MiB (the interpreter and its libraries)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_flipped_byte_is_a_named_problem_never_an_exception(bundle, data):
    raw = bytearray(bundle.read_bytes())
    offset = data.draw(st.integers(0, len(raw) - 1))
    raw[offset] ^= data.draw(st.integers(1, 255))
    path = bundle.parent / "flipped.zip"
    path.write_bytes(bytes(raw))
    report = verify_bundle(path)
    assert all(p.text("en") for p in report.problems)  # reading never raised


# -- forgeries that change what the checks would say: replay names each -----------------------


def _forge(bundle, tmp_path, edit) -> Path:
    members = _members(bundle)
    manifest = json.loads(members["manifest.json"])
    edit(manifest, members)
    return _reseal(members, manifest, tmp_path / "forged.zip")


def _result(manifest, scenario):
    return next(r for r in manifest["results"] if r["scenario"] == scenario)


def test_forged_requirement_verdict_is_caught_by_replay(bundle, tmp_path, capsys):
    forged = _forge(bundle, tmp_path, lambda m, _: m["requirements"]["LES-3.1-CHANNELS"].__setitem__("verdict", "PASS"))
    code, out = _verify(capsys, "--replay", str(forged))
    assert code == 1
    assert "LES-3.1-CHANNELS: PASS -> FAIL (requirement verdict differs from what the replayed results give)" in out


def test_forged_summary_is_caught_by_replay(bundle, tmp_path, capsys):
    def edit(m, members):
        members["summary.fr.txt"] = members["summary.fr.txt"].replace("✘ FAIL".encode(), "✔ PASS".encode())

    code, out = _verify(capsys, "--replay", str(_forge(bundle, tmp_path, edit)))
    assert code == 1 and "summary.fr.txt: - -> - (the sealed summary differs from what the replayed results give)" in out


def test_a_failed_result_dressed_as_not_run_is_caught_by_replay(bundle, tmp_path, capsys):
    def edit(m, _):
        r = _result(m, "version-same-in-channels")
        r["reason"] = {"fr": "non exécuté", "en": "not run"}
        r["verdict"] = "NOT_RUN"
        m["requirements"]["LES-3.1-CHANNELS"]["verdict"] = "NOT_RUN"

    code, out = _verify(capsys, "--replay", str(_forge(bundle, tmp_path, edit)))
    assert code == 1 and "version-same-in-channels: NOT_RUN -> NOT_RUN (recorded as not run but carries a verdict, checks or inputs)" in out


def test_a_scenario_redefined_with_a_harmless_check_is_caught_by_replay(bundle, tmp_path, capsys):
    def edit(m, _):
        scenario = next(s for s in m["scenarios"] if s["id"] == "version-same-in-channels")
        scenario["checks"] = ["version.orderable_scheme"]
        r = _result(m, "version-same-in-channels")
        r["verdict"], r["checks"] = "PASS", [dict(r["checks"][0], name="version.orderable_scheme", verdict="PASS", findings=0)]
        m["requirements"]["LES-3.1-CHANNELS"]["verdict"] = "PASS"

    code, out = _verify(capsys, "--replay", str(_forge(bundle, tmp_path, edit)))
    assert code == 1
    assert "version-same-in-channels: - -> - (recorded definition differs from the installed one (checks): replayed with the installed one)" in out
    assert "version-same-in-channels: PASS -> FAIL (verdict)" in out


def test_an_untouched_bundle_replays_identically(bundle, capsys):
    code, out = _verify(capsys, "--replay", str(bundle))
    assert code == 0 and "identical verdicts" in out


# -- forged reports inside a valid proof: rendered again, never copied ------------------------


def _forged_reports(bundle, tmp_path) -> Path:
    """The matrix says PASS where the run said FAIL, with a formula; the page says PASS too."""
    def edit(m, members):
        members["reports/coverage.csv"] = members["reports/coverage.csv"].replace(b"FAIL", b"PASS") + b'=HYPERLINK("http://x")\r\n'
        members["reports/report.html"] = members["reports/report.html"].replace(b"FAIL", b"PASS")

    return _forge(bundle, tmp_path, edit)


def test_forged_reports_are_named_by_replay(bundle, tmp_path, capsys):
    code, out = _verify(capsys, "--replay", str(_forged_reports(bundle, tmp_path)))
    assert code == 1
    for member in ("reports/coverage.csv", "reports/report.html"):
        assert f"{member}: - -> - (the sealed report differs from what the replayed results give)" in out
    assert "reports/coverage.xlsx" not in out  # the untouched one is the one replay renders


def test_harness_report_renders_from_the_checks_and_never_copies_a_forged_matrix(bundle, tmp_path, capsys):
    forged = _forged_reports(bundle, tmp_path)
    code = cli(["--lang", "en", "report", str(forged), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 1 and "reports/coverage.csv: - -> -" in out
    [csv] = (tmp_path / "out").glob("*.coverage.csv")
    written = csv.read_bytes()
    assert b"HYPERLINK" not in written and b"LES-3.1-CHANNELS" in written
    row = next(line for line in written.decode("utf-8-sig").splitlines() if line.startswith("LES-3.1-CHANNELS,"))
    assert ",FAIL," in row  # the verdict the checks give, not the forged one
    with zipfile.ZipFile(bundle) as zf:  # and on the untouched bundle, the report is the sealed one
        sealed = zf.read("reports/coverage.csv")
    assert cli(["--lang", "fr", "report", str(bundle), "--out", str(tmp_path / "clean")]) == 0  # the run's language
    assert next((tmp_path / "clean").glob("*.coverage.csv")).read_bytes() == sealed


def test_equivalence_reuses_no_proof_whose_own_checks_fail(bundle, tmp_path, capsys):
    """The verdicts turned PASS, the check steps left as they were (FAIL), the bundle re-sealed:
    compared with itself, nothing is equivalent, so nothing is offered for reuse."""
    def edit(m, _):
        for r in m["results"]:
            if r["verdict"] == "FAIL":
                r["verdict"] = "PASS"
        for req in m["requirements"].values():
            if req["verdict"] == "FAIL":
                req["verdict"] = "PASS"

    forged = _forge(bundle, tmp_path, edit)
    code = cli(["--lang", "en", "equivalence", str(forged), str(forged), "--json", str(tmp_path / "eq.json")])
    out = capsys.readouterr().out
    assert code == 1
    rows = {r["requirement"]: r for r in json.loads((tmp_path / "eq.json").read_text())["requirements"]}
    assert rows["LES-3.1-CHANNELS"]["reusable"] is False and rows["LES-3.1-CHANNELS"]["equivalent"] is False
    assert "earlier bundle: version-same-in-channels replays otherwise than recorded (PASS -> FAIL: verdict)" in out
    honest = {r["requirement"]: r for r in _equivalence_rows(bundle, tmp_path, capsys)}
    assert honest["LES-3.1-CHANNELS"]["equivalent"] is True  # the untouched bundle is equivalent to itself


def _equivalence_rows(bundle, tmp_path, capsys):
    cli(["--lang", "en", "equivalence", str(bundle), str(bundle), "--json", str(tmp_path / "honest.json")])
    capsys.readouterr()
    return json.loads((tmp_path / "honest.json").read_text())["requirements"]


@pytest.mark.slow
def test_report_budgets_images_by_their_real_size_not_the_declared_one(bundle, tmp_path):
    """An image of 40 MiB whose manifest declares 100 bytes: listed by hash, never inlined."""
    import os

    members = _members(bundle)
    manifest = json.loads(members["manifest.json"])
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(40 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    members[f"artefacts/{digest}"] = data
    manifest["members"][f"artefacts/{digest}"] = digest
    manifest["artefacts"][digest] = {"label": "version.screenshot:forged", "media_type": "image/png", "size": 100}
    forged = _reseal(members, manifest, tmp_path / "image.zip")
    proc = subprocess.run([sys.executable, "-c", PEAK, "--lang", "en", "report", str(forged), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    [page] = (tmp_path / "out").glob("*.html")
    assert page.stat().st_size < 8 * 1024 * 1024, page.stat().st_size
    assert digest in page.read_text()  # listed by its hash
    peak_kib = int(proc.stdout.split("PEAK")[-1])
    assert peak_kib < 400 * 1024, peak_kib
