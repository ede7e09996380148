"""The embedded demo vendor: conformant by default, one behaviour broken per defect."""
import json

import pytest
import requests

from harness_demo.app import DEFECTS, DemoConfig, DemoServer, UnknownDefect


@pytest.fixture
def demo():
    servers = []

    def start(**kw):
        server = DemoServer(DemoConfig(**kw)).start()
        servers.append(server)
        return server.base_url

    yield start
    for s in servers:
        s.stop()


def test_conformant_demo_shows_its_version_in_ui_and_api(demo):
    base = demo()
    home = requests.get(base, timeout=5).text
    assert 'id="about"' in home and "version 3.2.1" in home
    assert "<dd>3.2.1</dd>" in requests.get(base + "about", timeout=5).text
    about = requests.get(base + "api/about", timeout=5).json()
    assert about["version"] == "3.2.1" and about["build"]["fingerprint"].startswith("sha256:")
    assert requests.get(base + "nowhere", timeout=5).status_code == 404


def test_fingerprint_follows_the_build_not_the_claimed_version():
    assert DemoConfig().fingerprint == DemoConfig().fingerprint
    assert DemoConfig(release="3.1.0").fingerprint != DemoConfig().fingerprint
    frozen = DemoConfig(defects=["version-frozen"])
    assert frozen.shown_version == "3.1.0" and frozen.fingerprint != DemoConfig(release="3.1.0").fingerprint


def test_token_protects_the_api(demo):
    base = demo(token="t0k3n-abcdef")
    assert requests.get(base + "api/about", timeout=5).status_code == 401
    ok = requests.get(base + "api/about", headers={"Authorization": "Bearer t0k3n-abcdef"}, timeout=5)
    assert ok.status_code == 200 and json.loads(ok.text)["version"] == "3.2.1"


def test_unknown_defect_is_refused_with_the_known_list():
    with pytest.raises(UnknownDefect) as exc:
        DemoConfig(defects=["version-hiden"])
    assert "version-hidden" in str(exc.value)


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_defect_changes_what_the_demo_shows(demo, defect):
    base = demo(defects=[defect])
    good = DemoConfig()
    home = requests.get(base, timeout=5).text
    api = requests.get(base + "api/about", timeout=5).json()
    assert (good.shown_version in home and api["version"] == good.shown_version and api["build"]["fingerprint"] == good.fingerprint) is False


def test_harness_demo_command_refuses_unknown_defects_with_the_list():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "harness.cli", "--lang", "en", "demo", "--defect", "nope"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "unknown defect(s): nope; known: " in proc.stderr
    assert "version-channel-mismatch" in proc.stderr and "ins-key" in proc.stderr
