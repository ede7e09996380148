"""What a killed run leaves behind is removed by the next run; what a live run uses is not.
And the secret scrubber finds a secret wherever base64 or an escape put it."""
import base64
import fcntl
import html
import json
import os
import signal
import subprocess
import sys
import time

from urllib.parse import quote

from hypothesis import example, given, settings, strategies as st

from harness.proof.sealing import LOCK, clean_debris
from harness.secrets import Scrubber
from tests.harness_run import run_harness


def test_a_run_killed_mid_way_leaves_debris_the_next_run_removes(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HARNESS_"))}
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--scenario", "all"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    reports = tmp_path / "reports"
    while time.monotonic() < deadline and not list(reports.glob(".staging-*/objects/*")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [staging] = list(reports.glob(".staging-*"))
    (reports / f".{staging.name[len('.staging-'):]}.zip.abc123.partial").write_bytes(b"half a bundle")
    run = run_harness(tmp_path, "--scenario", "version-visible-in-ui")
    assert run.returncode == 0
    assert not list(reports.glob(".staging-*")) and not list(reports.glob("*.partial"))
    assert [p.name for p in reports.glob("*.zip")] == [run.bundle.name]


def test_the_staging_folder_of_a_live_run_is_left_alone(tmp_path):
    live = tmp_path / ".staging-20990101T000000Z-live"
    live.mkdir()
    with open(live / LOCK, "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        dead = tmp_path / ".staging-20990101T000000Z-dead"
        dead.mkdir()
        (dead / LOCK).touch()
        young = tmp_path / ".staging-20990101T000000Z-young"  # created a moment ago, no lock yet
        young.mkdir()
        assert clean_debris(tmp_path) == ["20990101T000000Z-dead"]
        assert live.exists() and young.exists() and not dead.exists()


@settings(max_examples=200, deadline=None)
@given(secret=st.text(min_size=8, max_size=40).filter(lambda s: len(s.strip()) >= 8 and "\n" not in s and "\r" not in s),
       prefix=st.binary(max_size=7), suffix=st.binary(max_size=7))
@example(secret="0000000\\", prefix=b"", suffix=b"")  # a trailing backslash: JSON's "\\\\" is taken whole
def test_a_secret_is_scrubbed_from_any_base64_or_json_that_carries_it(secret, prefix, suffix):
    scrub = Scrubber([secret])
    encoded = base64.b64encode(prefix + secret.encode() + suffix)
    assert scrub.bytes(encoded) != encoded
    for text in (json.dumps({"echo": secret}), json.dumps({"echo": secret}, ensure_ascii=False)):
        assert json.loads(scrub.text(text))["echo"] != secret


def _encodings(ch: str) -> list[str]:
    out = [ch, json.dumps(ch)[1:-1], f"&#x{ord(ch):X};", f"&#x{ord(ch):04x};", f"&#{ord(ch)};", html.escape(ch), quote(ch, safe="")]
    if ch == "/":
        out.append("\\/")
    return out


@settings(max_examples=200, deadline=None)
@given(secret=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=6, max_size=24).filter(
           lambda s: len(s.strip()) >= 6), choices=st.lists(st.integers(min_value=0, max_value=8), min_size=24, max_size=24))
def test_a_secret_is_scrubbed_whatever_mix_of_escapes_a_peer_gives_each_character(secret, choices):
    """Encoders differ on which characters they escape (PHP writes "\\/", an HTML template
    "&#x2F;"): each character of the echo takes its own form."""
    echo = "".join((forms := _encodings(ch))[choices[i] % len(forms)] for i, ch in enumerate(secret))
    scrubbed = Scrubber([secret]).text(f"<p>error: {echo} refused</p>")
    assert scrubbed == "<p>error: ***REDACTED*** refused</p>", (secret, echo, scrubbed)
