"""`--offline` proved, not assumed (issue 24): the browser scenario runs against a hostile page
(WebSocket, WebRTC, fetch, beacon, prefetch, remote fonts and images, to IP literals and to
names) inside a network namespace whose only way out is watched, and nothing leaves: no
connection, no DNS query, no STUN request, not even an ARP, from the page or from Chromium's
own background services. Chromium renders the page inside its sandbox."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness_version.browser import find_browser

PROBE = Path(__file__).with_name("netns_probe.py")


def _netns_unavailable() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux's"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (util-linux, iproute2)"
    try:
        test = subprocess.run(["unshare", "--net", "--", "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare --net failed: {exc}"
    if test.returncode != 0:
        return f"no network namespace with a veth pair here: {test.stderr.strip()[:200]}"
    if find_browser() is None:
        return "no Chromium"
    return None


@pytest.mark.slow
def test_offline_browser_sends_nothing_beyond_loopback(tmp_path):
    why = _netns_unavailable()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must prove --offline: {why}")
        pytest.skip(why)
    root = Path(__file__).parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(["unshare", "--net", "--", sys.executable, str(PROBE), str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["probe_seen"], ("the watch did not see its own probe: it proves nothing", seen["after"])
    assert seen["leaked"] == [], seen["leaked"]
    # the scenario ran and judged the page: its version seen, the page's outside requests refused
    assert seen["returncode"] == 0, seen["stdout"] + seen["stderr"]
    with zipfile.ZipFile(seen["bundle"]) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        [rendering] = [json.loads(zf.read(f"artefacts/{d}")) for d, m in manifest["artefacts"].items() if m["label"] == "version.ui.rendering"]
    assert manifest["requirements"]["LES-3.1-UI"]["verdict"] == "PASS"
    refused = {r["url"] for r in rendering["requests"] if "failure" in r}
    assert {"http://198.51.100.8/x", "http://198.51.100.9/b"} <= refused, rendering["requests"]
    assert rendering["sandbox"].startswith("on") and "renderer seccomp filter" in rendering["sandbox"], rendering["sandbox"]
