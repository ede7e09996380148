"""Chronology and code-change rules against a vendor's own earlier bundles."""
import functools
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.harness_run import RunPool, run_harness

# where the user interface's version does not matter (a forged bundle, an API's own field
# names), runs without a browser: the version and build a run evidences are the API's then
without_browser = functools.partial(run_harness, env={"HARNESS_BROWSER": "none"})

# the rules these tests judge (the whole "version" tag would also ask the demo for its DMP
# submission and MSSanté message, for the documents' scenario)
HISTORY = ("--scenario", "version-later-than-evidenced", "--scenario", "version-changes-with-build")

DEMO_TARGET = Path(__file__).parents[1] / "plugins" / "harness_demo" / "target.toml"


def _target(folder: Path, *, release: str, declared: str, defects=()) -> Path:
    text = DEMO_TARGET.read_text()
    text = text.replace('version = "3.2.1"', f'version = "{declared}"')
    text = text.replace("defects = []", f"defects = {json.dumps(list(defects))}\nrelease = \"{release}\"")
    text = text.replace('bundles = ["history"]', 'bundles = ["reports"]')
    path = folder / f"target-{release}-{len(defects)}.toml"
    path.write_text(text)
    return path


def _history(run) -> dict:
    with zipfile.ZipFile(run.bundle) as zf:
        m = json.loads(zf.read("manifest.json"))
        digest = next(d for d, meta in m["artefacts"].items() if meta["label"] == "version.history")
        return json.loads(zf.read(f"artefacts/{digest}"))


def _test_vendor_history_in_its_own_reports_folder(tmp_path):
    first = run_harness(tmp_path, *HISTORY, "--target", str(_target(tmp_path, release="3.2.1", declared="3.2.1")))
    assert first.returncode == 0
    assert first.requirement_verdicts()["LES-3.1-CHRONO"] == "INCONCLUSIVE"  # nothing earlier yet

    again = run_harness(tmp_path, *HISTORY, "--target", str(_target(tmp_path, release="3.2.1", declared="3.2.1")))
    verdicts = again.requirement_verdicts()
    # the same build evidenced twice: consistent, but no other version to order against
    assert verdicts["LES-3.1-CHANGE"] == "PASS" and verdicts["LES-3.1-CHRONO"] == "INCONCLUSIVE"

    newer = run_harness(tmp_path, *HISTORY, "--target", str(_target(tmp_path, release="3.2.2", declared="3.2.2")))
    assert newer.returncode == 0
    assert newer.requirement_verdicts()["LES-3.1-CHRONO"] == "PASS"
    assert [r["version"] for r in _history(newer)["records"]] == ["3.2.1", "3.2.1"]

    # a rebuild (another fingerprint) still calling itself 3.2.2
    rebuild = run_harness(tmp_path, *HISTORY, "--lang", "en",
                          "--target", str(_target(tmp_path, release="3.2.2", declared="3.2.2", defects=["version-channel-mismatch"])))
    assert "LES-3.1-CHANGE" in rebuild.failing()
    assert any(f["rule"] == "VER-CODE-01" and "3.2.2" in f["message"]["en"] for f in rebuild.findings())

    # an older version after 3.2.2 was evidenced
    older = run_harness(tmp_path, *HISTORY, "--target", str(_target(tmp_path, release="3.1.5", declared="3.1.5")))
    assert "LES-3.1-CHRONO" in older.failing()


def _test_a_tampered_earlier_bundle_is_not_trusted(tmp_path):
    first = without_browser(tmp_path, *HISTORY, "--target", str(_target(tmp_path, release="3.2.1", declared="3.2.1")))
    forged = tmp_path / "reports" / "forged.zip"
    shutil.copy(first.bundle, forged)
    data = bytearray(forged.read_bytes())
    data[len(data) // 3] ^= 0xFF
    forged.write_bytes(bytes(data))
    second = without_browser(tmp_path, *HISTORY, "--target", str(_target(tmp_path, release="3.2.2", declared="3.2.2")))
    history = _history(second)
    assert [r["bundle"] for r in history["records"]] == [first.bundle.name]
    assert [s["bundle"] for s in history["skipped"]] == ["forged.zip"]


def _test_a_product_api_with_its_own_field_names_builds_a_history_and_a_rebuild_under_the_same_version_fails(tmp_path):
    """Earlier bundles are read with the target's [version] field settings, as the live check
    reads the API: without that, such a product never had a history and both rules stayed
    INCONCLUSIVE."""
    def target(build: str) -> Path:
        text = DEMO_TARGET.read_text().replace('bundles = ["history"]', 'bundles = ["reports"]')
        text = text.replace("defects = []", f'defects = []\napi_layout = "software"\nbuild = "{build}"')
        text += '\n[version]\napi_version_field = "software.release"\napi_fingerprint_field = "software.build_id"\n'
        path = tmp_path / f"target-{build}.toml"
        path.write_text(text)
        return path

    first = without_browser(tmp_path, *HISTORY, "--target", str(target("build-1")))
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.requirement_verdicts()["LES-3.1-CHANGE"] == "INCONCLUSIVE"  # nothing earlier yet
    rebuild = without_browser(tmp_path, *HISTORY, "--lang", "en", "--target", str(target("build-2")))
    history = _history(rebuild)
    assert [(r["version"], r["fingerprint"] is not None) for r in history["records"]] == [("3.2.1", True)]
    assert rebuild.returncode == 1 and rebuild.requirement_verdicts()["LES-3.1-CHANGE"] == "FAIL"
    [finding] = [f for f in rebuild.findings() if f["rule"] == "VER-CODE-01"]
    assert "but the version stayed 3.2.1" in finding["message"]["en"] and first.bundle.name in finding["location"]


# Each test is a sequence of runs that read the bundles of the runs before them (one folder);
# the three sequences run at once (tests/harness_run.py); each test reads how its own went (an
# assertion that failed in its sequence is raised there).
SEQUENCES = [_test_vendor_history_in_its_own_reports_folder, _test_a_tampered_earlier_bundle_is_not_trusted, _test_a_product_api_with_its_own_field_names_builds_a_history_and_a_rebuild_under_the_same_version_fails]


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    with RunPool(tmp_path_factory) as pool:
        for body in SEQUENCES:
            pool.submit(body.__name__, body, tmp_path_factory.mktemp(body.__name__[6:40]))
        yield pool


def test_vendor_history_in_its_own_reports_folder(sequences):
    sequences["_test_vendor_history_in_its_own_reports_folder"]


def test_a_tampered_earlier_bundle_is_not_trusted(sequences):
    sequences["_test_a_tampered_earlier_bundle_is_not_trusted"]


def test_a_product_api_with_its_own_field_names_builds_a_history_and_a_rebuild_under_the_same_version_fails(sequences):
    sequences["_test_a_product_api_with_its_own_field_names_builds_a_history_and_a_rebuild_under_the_same_version_fails"]
