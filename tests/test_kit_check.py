"""``harness-kit-check FILE``: one document's verdict at once through the running kit server, the
same verdict in process without it, a server of another harness's code never used."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from harness_cda.server import kit_stamp
from tests.harness_run import harness_env

ROOT = Path(__file__).parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "ans-testcontenucda"
EXAMPLES = CORPUS / "ExemplesCDA"
pytestmark = pytest.mark.skipif(not (CORPUS / "schematrons").is_dir(), reason="the shared corpus (ans-testcontenucda) is absent")
FAILING = EXAMPLES / "01_Modèles_contenus_CDA.xml"  # the IPS-FR type code without the volet's templateId
PASSING = EXAMPLES / "CARD-F-PRC-DCI_2022.01.xml"


def _check(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness_cda.quick", *args], env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``harness kit serve`` in its own process, as a user starts it."""
    root = tmp_path_factory.mktemp("kit-check")
    state = root / "kit-server.json"
    env = harness_env({"XDG_CACHE_HOME": str(root / "cache"), "HARNESS_KIT_SERVER_STATE": str(state), "HARNESS_CDA_KIT": str(CORPUS)})
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "kit", "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        assert "prêt" in proc.stdout.readline()
        yield env, state
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_a_document_is_judged_through_the_server_as_the_scenarios_judge_it(served):
    env, _ = served
    failing = _check(env, str(FAILING))
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert f"{FAILING.name} : FAIL (" in failing.stdout and "serveur du kit)" in failing.stdout
    assert "cda-kit-volets           FAIL" in failing.stdout and "CDA-VOLET-03" in failing.stdout
    assert "cda-kit-header           PASS" in failing.stdout
    passing = _check(env, str(PASSING))
    assert passing.returncode == 0 and f"{PASSING.name} : PASS" in passing.stdout, passing.stdout + passing.stderr
    both = _check(env, "--lang", "en", str(PASSING), str(FAILING))
    assert both.returncode == 1 and "kit server)" in both.stdout and "Conforms to no version of volet IPS-FR" in both.stdout
    # the same command under harness
    under = subprocess.run([sys.executable, "-m", "harness.cli", "kit", "check", str(PASSING)], env=env, capture_output=True, text=True, timeout=120)
    assert under.returncode == 0 and "serveur du kit" in under.stdout, under.stdout + under.stderr


def test_without_a_server_of_this_very_code_the_verdict_is_the_same_in_process(served, tmp_path):
    env, state = served
    remote = json.loads(_check(env, "--json", str(FAILING)).stdout)
    other = dict(json.loads(state.read_text()), code="0123456789abcdef")  # a server started before the harness changed
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(other))
    local = _check(dict(env, HARNESS_KIT_SERVER_STATE=str(stale)), "--json", str(FAILING))
    assert "d'une autre version ou d'un autre code du harness" in local.stderr
    assert local.returncode == 1
    local = json.loads(local.stdout)
    for said in (remote, local):
        said.pop("seconds")
    assert local == remote
    assert remote["results"]["cda-kit-volets"]["verdict"] == "FAIL" and remote["inputs"]["doc/" + FAILING.name][0] == remote["sha256"]


def test_the_server_refuses_a_document_name_that_is_a_path_and_a_folder_that_is_no_kit(served, tmp_path):
    env, state = served
    said = json.loads(state.read_text())
    ask = lambda body: requests.post(said["url"] + "judge", json=body, timeout=60, headers={"Authorization": f"Bearer {said['token']}"})
    res = ask({"kit": str(CORPUS), "name": "../evil.xml", "document": "PGEvPg=="})
    assert res.status_code == 422 and "sans dossier" in res.json()["error"]["fr"]
    res = ask({"kit": str(tmp_path), "name": "a.xml", "document": "PGEvPg=="})
    assert res.status_code == 422 and "document non jugé" in res.json()["error"]["fr"]
    assert requests.post(said["url"] + "judge", json={}, timeout=10).status_code == 401  # the token first
    missing = _check(env, str(tmp_path / "absent.xml"))
    assert missing.returncode == 2 and "absent.xml illisible" in missing.stderr
    nokit = _check(env, "--kit", str(tmp_path), str(PASSING))
    assert nokit.returncode == 2 and "n'est pas un dossier du kit" in nokit.stderr


def test_a_kit_changed_under_the_server_is_read_again(tmp_path):
    kit = tmp_path / "kit"
    (kit / "schematrons").mkdir(parents=True)
    sch = kit / "schematrons" / "a.sch"
    sch.write_text("<schema/>")
    before = kit_stamp(kit)
    assert kit_stamp(kit) == before
    sch.write_text("<schema>changed</schema>")
    os.utime(sch, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert kit_stamp(kit) != before
    (kit / "jeuxDeValeurs").mkdir()
    (kit / "jeuxDeValeurs" / "JDV.xml").write_text("<a/>")
    assert kit_stamp(kit) not in (before,)
