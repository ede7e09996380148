"""The suite's fork server (tests/harness_zygote.py): a run forked from it is the run a fresh
interpreter gives (exit code, verdicts, its own folder and environment), and a run past its
deadline is stopped, as subprocess.run's timeout would."""
import os
import subprocess
import time

import pytest

from tests.harness_run import _Zygote, run_harness

QUICK = ("--scenario", "version-orderable-scheme")
NO_BROWSER = {"HARNESS_BROWSER": "none"}


@pytest.fixture(autouse=True)
def _forking(monkeypatch):
    monkeypatch.delenv("TEST_RUN_FORK", raising=False)
    if _Zygote.path() is None:
        pytest.skip("the fork server did not start (said on stderr); runs are fresh interpreters")


def _folder(tmp_path, name):
    (tmp_path / name).mkdir()
    return tmp_path / name


def test_a_forked_run_concludes_as_a_fresh_interpreter_does(tmp_path):
    forked = run_harness(_folder(tmp_path, "forked"), *QUICK, env=NO_BROWSER)
    fresh = run_harness(_folder(tmp_path, "fresh"), *QUICK, env=NO_BROWSER, fresh=True)
    assert forked.returncode == fresh.returncode == 0
    assert forked.requirement_verdicts() == fresh.requirement_verdicts() == {"LES-3.1-SCHEME": "PASS"}
    assert forked.bundle.parent == tmp_path / "forked" / "reports" and fresh.bundle.parent == tmp_path / "fresh" / "reports"


def test_each_forked_run_has_its_own_environment(tmp_path):
    english = run_harness(_folder(tmp_path, "en"), *QUICK, env={**NO_BROWSER, "HARNESS_LANG": "en"})
    french = run_harness(_folder(tmp_path, "fr"), *QUICK, env=NO_BROWSER)  # the run before's language does not stay
    assert "Evidence bundle: " in english.stdout and "Dossier de preuves : " not in english.stdout
    assert "Dossier de preuves : " in french.stdout and "Evidence bundle: " not in french.stdout


def _alive_in(folder) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd").startswith(str(folder)):
                found.append(pid)
        except OSError:
            pass
    return found


def test_a_forked_run_past_its_deadline_is_stopped_and_what_it_started_ends(tmp_path):
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_harness(tmp_path, "--scenario", "version", timeout=1)
    assert time.monotonic() - started < 5
    # the run's process group is killed at once; a browser or a demo vendor in a session of
    # its own notices its parent gone and ends
    deadline = time.monotonic() + 30
    while _alive_in(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive_in(tmp_path) == []
