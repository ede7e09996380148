"""A collector that alters the software (harness.running.steps.collector's ``alters``: it registers
patients, who then appear in the software's feeds and documents) runs after every scenario that
does not: its scenarios are ordered last, and the process that collects it waits until every
other scenario of the run ended, in whichever process ran it (pytest-xdist), within a bound."""
import threading
import time
from types import SimpleNamespace

from harness.running.steps import alters, collector
from harness.session import live
from harness.session.live import LiveSession
from harness.results import StepStatus


def _session(tmp_path, waiting: set[str]):
    folder = tmp_path / "once" / "ended"
    return SimpleNamespace(before_altering=waiting, _done_folder=lambda: folder,
                           _mark_ended=lambda s: LiveSession._mark_ended(SimpleNamespace(_done_folder=lambda: folder), s))


def test_the_collector_waits_until_every_other_scenario_ended_in_any_process(tmp_path):
    s = _session(tmp_path, {"ins-hl7v2", "version-visible-in-ui"})
    s._mark_ended("ins-hl7v2")
    done = {}

    def wait():
        done["result"], done["at"] = LiveSession._wait_others(s, "ins.insi_register"), time.monotonic()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)
    assert waiter.is_alive()  # one scenario still running (another process's, say)
    ended = time.monotonic()
    s._mark_ended("version-visible-in-ui")
    waiter.join(5)
    assert done["result"] is None and done["at"] >= ended


def test_a_run_whose_other_scenarios_never_end_gives_the_collector_an_error_naming_them(tmp_path, monkeypatch):
    monkeypatch.setattr(live, "OTHERS_WAIT", 0.3)
    s = _session(tmp_path, {"psc-login"})
    got = LiveSession._wait_others(s, "ins.insi_register")
    assert got.status is StepStatus.ERROR
    assert "psc-login" in got.message.render("en") and "waits for the other scenarios" in got.message.render("en")


def test_scenarios_with_an_altering_collector_are_known_and_the_flag_defaults_to_off():
    @collector(produces=["x"], once_per_run=True, alters=True)
    def registers(ctx):
        return {}

    @collector(produces=["y"])
    def reads(ctx):
        return {}

    registry = SimpleNamespace(collectors={"registers": registers, "reads": reads})
    assert alters(SimpleNamespace(collect=["reads", "registers"]), registry)
    assert not alters(SimpleNamespace(collect=["reads", "unknown"]), registry)
    assert reads.alters is False


def test_the_lifecycle_scenarios_run_last_in_a_run_that_selects_them_first(tmp_path):
    from tests.harness_run import run_harness

    run = run_harness(tmp_path, "--scenario", "insi", "--scenario", "ins-hl7v2", "--collect-only", "-q")
    order = [line.rsplit("::", 1)[-1] for line in run.stdout.splitlines() if "::" in line]
    assert order == ["ins-hl7v2", "dmp-insi-qualified", "ins-insi-qualification", "ins-insi-unavailable", "mssante-insi-qualified"], run.stdout
