"""The plugin guide is honest: its plugin installs from its own pyproject.toml and runs, and
the contract errors it promises are what a plugin author sees."""
import os
import re
import subprocess
import sys
import zipfile
import json
from pathlib import Path

import pytest

GUIDE = Path(__file__).parents[1] / "docs" / "plugins.md"
FILE_BLOCK = re.compile(r"```\w*\n# file: (\S+)\n(.*?)```", re.DOTALL)


def guide_files() -> dict[str, str]:
    return {path: body for path, body in FILE_BLOCK.findall(GUIDE.read_text(encoding="utf-8"))}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The guide's plugin, built from its pyproject.toml and installed with pip into a
    folder of its own (the test session's environment stays as it was)."""
    source = tmp_path_factory.mktemp("toy-src")
    for path, body in guide_files().items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).write_text(body, encoding="utf-8")
    site = tmp_path_factory.mktemp("toy-site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                           "--target", str(site), str(source)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (site / "harness_toy" / "locale" / "fr" / "LC_MESSAGES" / "harness_toy.po").is_file()
    return site


def _run(site: Path, cwd: Path, *args: str, module: str = "pytest") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HARNESS_"))}
    env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, "-m", module, *(["-p", "no:cacheprovider"] if module == "pytest" else []), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _target(folder: Path, motd: str) -> Path:
    (folder / "motd.txt").write_text(motd, encoding="utf-8")
    target = folder / "toy.toml"
    target.write_text('[product]\nid = "toy"\nname = "Toy"\nversion = "1.0"\n\n[toy]\nmotd = "motd.txt"\n', encoding="utf-8")
    return target


def _bundle(folder: Path) -> Path:
    return next((folder / "reports").glob("*.zip"))


def test_the_guide_names_every_file_of_its_plugin():
    assert set(guide_files()) == {"pyproject.toml", "harness_toy/__init__.py", "harness_toy/plugin.py", "harness_toy/scenarios/toy.toml",
                                  "harness_toy/locale/fr/LC_MESSAGES/harness_toy.po", "harness_toy/locale/en/LC_MESSAGES/harness_toy.po"}


def test_the_guide_plugin_installs_through_its_entry_point_and_its_scenario_passes_and_replays(installed, tmp_path):
    run = _run(installed, tmp_path, "--scenario", "toy", "--target", str(_target(tmp_path, "Bienvenue")))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Message affiché : Bienvenue" not in run.stdout  # an INFO finding is in the bundle, not in the failures
    bundle = _bundle(tmp_path)
    with zipfile.ZipFile(bundle) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        findings = json.loads(zf.read("findings/toy-motd.json"))
    assert manifest["requirements"]["TOY-1"]["verdict"] == "PASS"
    assert manifest["plugins"]["toy"] == "harness-toy 1.0.0"
    assert manifest["scenarios"][0]["file"].endswith("harness_toy/scenarios/toy.toml")
    assert findings[0]["message"] == {"fr": "Message affiché : Bienvenue", "en": "Message shown: Bienvenue"}
    replay = _run(installed, tmp_path, "verify", "--replay", str(bundle), module="harness.cli")
    assert replay.returncode == 0 and "verdicts identiques" in replay.stdout, replay.stdout + replay.stderr


def test_the_guide_plugin_fails_an_empty_message_in_the_users_language(installed, tmp_path):
    run = _run(installed, tmp_path, "--scenario", "toy-motd", "--target", str(_target(tmp_path, "  \n")))
    assert run.returncode == 1
    assert "[TOY-01] error TOY-1 @ motd: Le message du jour est vide" in run.stdout
    english = _run(installed, tmp_path, "--scenario", "toy-motd", "--lang", "en", "--target", str(_target(tmp_path, "")))
    assert "[TOY-01] error TOY-1 @ motd: The message of the day is empty" in english.stdout


def _with_plugin_code(site: Path, extra: str):
    plugin = site / "harness_toy" / "plugin.py"
    original = plugin.read_text()
    plugin.write_text(original + extra)
    return plugin, original


def test_a_misspelt_hook_of_an_installed_plugin_stops_the_run_naming_it(installed, tmp_path):
    plugin, original = _with_plugin_code(installed, "\n\ndef harness_colectors():\n    return {}\n")
    try:
        run = _run(installed, tmp_path, "--scenario", "toy", "--target", str(_target(tmp_path, "x")))
    finally:
        plugin.write_text(original)
    assert run.returncode == 4
    assert ("Greffon toy : la fonction harness_colectors ne correspond à aucun point d'extension du harnais ; "
            "vouliez-vous dire : harness_collectors ?") in run.stderr
    assert "Traceback" not in run.stderr


def test_a_target_key_another_plugin_declares_stops_the_run_naming_both(installed, tmp_path):
    extra = '\n\n@hookimpl(specname="harness_target_schema")\ndef cda_kit_too():\n    return {"cda": {"kit": "path"}}\n'
    plugin, original = _with_plugin_code(installed, extra)
    try:
        run = _run(installed, tmp_path, "--lang", "en", "--scenario", "toy", "--target", str(_target(tmp_path, "x")))
    finally:
        plugin.write_text(original)
    assert run.returncode == 4
    assert "Target key [cda] kit declared by two plugins: harness-cda and toy" in run.stderr


SIMULATOR = '''

@hookimpl(specname="harness_target_schema")
def toy_simulator_schema():
    return {"services.toy-sim": {"port": "int"}}


@hookimpl
def harness_start_service(name, options, ctx):
    if name != "toy-sim":
        return None

    def stop():
        raise RuntimeError("port 8123 still held")

    return Service("toy-sim", "http://127.0.0.1:9/", stop)


_read_motd = collect_motd


@collector(produces=["motd"])
def collect_motd(ctx):
    ctx.endpoint("sim")  # starts the simulator, as a collector that talks to it would
    return _read_motd(ctx)
'''


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_an_error_stopping_a_service_is_reported_in_the_summary_and_the_manifest(installed, tmp_path, workers):
    plugin, original = _with_plugin_code(installed, SIMULATOR)
    plugin.write_text(plugin.read_text().replace("from harness import HarnessError,", "from harness import HarnessError, Service,"))
    target = _target(tmp_path, "Bienvenue")
    target.write_text(target.read_text() + '\n[endpoints]\nsim = "service://toy-sim/"\n\n[services.toy-sim]\nport = 0\n')
    try:
        run = _run(installed, tmp_path, *workers, "--scenario", "toy", "--target", str(target))
    finally:
        plugin.write_text(original)
    assert run.returncode == 0, run.stdout + run.stderr  # the verdicts stand
    assert "! Incident : Le service toy-sim ne s'est pas arrêté proprement : RuntimeError: port 8123 still held" in run.stdout
    with zipfile.ZipFile(_bundle(tmp_path)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        summary = zf.read("summary.en.txt").decode()
    assert manifest["incidents"] == [{"fr": "Le service toy-sim ne s'est pas arrêté proprement : RuntimeError: port 8123 still held",
                                      "en": "Service toy-sim did not stop cleanly: RuntimeError: port 8123 still held"}]
    assert "! Incident: Service toy-sim did not stop cleanly" in summary


def test_the_guides_smallest_simulator_runs_and_records_what_it_was_sent():
    """The guide's simulator: the kit's base class and a handler, four lines of code."""
    import urllib.request

    [block] = re.findall(r"```python\n# example: the smallest simulator\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.DOTALL)
    code = [line for line in block.splitlines() if line.strip() and not line.startswith(("from ", "import "))]
    assert len(code) == 3, code
    space: dict = {}
    exec(compile(block, "plugins.md", "exec"), space)
    with space["Echo"]() as sim:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(urllib.request.Request(sim.base_url + "x", data=b"bonjour"), timeout=5) as answer:
            assert answer.read() == b"BONJOUR"
        [exchange] = sim.journal.exchanges
        assert (exchange.method, exchange.path, exchange.request, exchange.http_status, exchange.response) == ("POST", "/x", b"bonjour", 200, b"BONJOUR")
