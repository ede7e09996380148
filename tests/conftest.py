import pytest

from harness.running.plugins import get_plugin_manager
from harness.running.assembly import target_schema


@pytest.fixture(scope="session")
def schema():
    return target_schema(get_plugin_manager())


@pytest.fixture
def write_target(tmp_path):
    def write(text: str, name: str = "target.toml"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


MINIMAL = """
[product]
id = "p"
name = "P"
version = "1.0.0"
"""


# The order xdist hands test files to its workers (each file whole: pytest_xdist_make_scheduler below, in this
# order: --no-loadscope-reorder). The longest first, so that no long file is left alone at the
# end; a file that keeps its worker's cores busy (a pool of harness runs and browsers:
# tests/harness_run.py) next to one that mostly waits (deadlines, slow clients, timeouts), so
# that while one worker waits the other's runs use both cores.
FIRST = ("test_version_pages.py", "test_hostile_dmp.py", "test_version_browser.py", "test_hostile_network.py", "test_run_e2e.py", "test_psc_e2e.py",
         "test_hostile_mail.py", "test_demo_vendor.py", "test_ins_e2e.py", "test_browser.py", "test_reports.py", "test_bundle.py",
         "test_dmp_e2e.py", "test_kit_batch.py", "test_smt_consumption.py", "test_terminology_e2e.py", "test_mssante_e2e.py", "test_pdsm_e2e.py",
         "test_plugin_guide.py", "test_version_history.py", "test_services.py", "test_pdsm_standin.py",
         "test_offline_netns.py", "test_junit.py", "test_signature.py", "test_mssante_receive.py", "test_cda_kit.py", "test_kit_check.py",
         "test_hostile_bundles.py", "test_hostile_targets.py")


def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist hands each test file whole to one worker (its own "loadfile" scheduler), so
    that the runs a file's tests share (a module fixture, a pool of runs: tests/harness_run.py)
    start once. Here and not as ``--dist loadfile`` in pyproject.toml's addopts: a scenario run
    started from this checkout reads that file too, and would run all the scenarios of a
    scenario file on one worker. Another ``--dist`` asked for on the command line is kept."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadFileScheduling

    return LoadFileScheduling(config, log)


def pytest_collection_modifyitems(items):
    rank = {name: n for n, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))  # stable: a file's own order kept


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """With TEST_CPU_LOG set (bench/suite.py): the CPU time each test file costs, its own
    process's and its subprocesses' (harness runs, browsers), appended per test."""
    import os

    log = os.environ.get("TEST_CPU_LOG")
    if not log:
        yield
        return
    import json
    import resource

    def cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    import time

    before, started = cpu(), time.time()
    yield
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"file": item.path.name, "test": item.name, "worker": os.environ.get("PYTEST_XDIST_WORKER", ""),
                             "start": round(started, 2), "end": round(time.time(), 2), "cpu": round(cpu() - before, 3)}) + "\n")
