"""Scenario files as data: loading, validation and selection."""
from pathlib import Path

import pytest

from harness import ScenarioError
from harness.running.scenarios import load_catalogue
from harness.running.assembly import scenario_dirs
from harness.running.plugins import get_plugin_manager

GOOD = """
[[requirement]]
id = "R-1"
source = "spec §1"
level = "must"
text = { fr = "exigence", en = "requirement" }

[[scenario]]
id = "{sid}"
title = { fr = "titre", en = "title" }
requirements = ["R-1"]
profiles = ["lgc"]
criticality = "minor"
proof = "text"
tags = ["mytag"]
collect = []
checks = ["x.y"]
"""


def test_builtin_catalogue_has_the_version_scenarios():
    cat = load_catalogue([*scenario_dirs(get_plugin_manager())])
    version = cat.select(["version"])
    assert len(version) == 7  # the channels requirement: UI and API, and the documents produced
    assert all("version" in s.tags for s in version)
    assert {r for s in version for r in s.requirements} == {
        "LES-3.1-UI", "LES-3.1-DECL", "LES-3.1-SCHEME", "LES-3.1-CHRONO", "LES-3.1-CHANGE", "LES-3.1-CHANNELS",
    }
    assert [s.id for s in cat.select(["all"])] == list(cat.scenarios)
    assert [s.id for s in cat.select(["version-visible-in-ui"])] == ["version-visible-in-ui"]


def test_unknown_name_fails_fast_with_known_names():
    cat = load_catalogue([*scenario_dirs(get_plugin_manager())])
    with pytest.raises(ScenarioError) as exc:
        cat.select(["version", "verison"])
    msg = exc.value.message("en")
    assert "verison" in msg and "version-visible-in-ui" in msg and "all" in msg


def test_user_folder_adds_scenarios_and_duplicates_are_refused(tmp_path):
    (tmp_path / "mine.toml").write_text(GOOD.replace("{sid}", "mine-1"))
    cat = load_catalogue([*scenario_dirs(get_plugin_manager()), tmp_path])
    assert [s.id for s in cat.select(["mytag"])] == ["mine-1"]
    (tmp_path / "dup.toml").write_text(GOOD.replace("{sid}", "version-visible-in-ui").replace("R-1", "R-2"))
    with pytest.raises(ScenarioError) as exc:
        load_catalogue([*scenario_dirs(get_plugin_manager()), tmp_path])
    assert "already defined" in exc.value.message("en") and "déjà défini" in exc.value.message("fr")


@pytest.mark.parametrize(
    "change, message",
    [
        (('criticality = "minor"', 'criticality = "huge"'), "criticality"),
        (('requirements = ["R-1"]', 'requirements = ["R-9"]'), "R-9"),
        (('checks = ["x.y"]', "checks = []"), "checks"),
        (('proof = "text"', 'proof = "text"\nsteps = 1'), "unknown keys"),
        (('title = { fr = "titre", en = "title" }', 'title = "t"'), "title"),
    ],
)
def test_invalid_scenario_files_are_reported(tmp_path, change, message):
    (tmp_path / "bad.toml").write_text(GOOD.replace("{sid}", "s").replace(*change))
    with pytest.raises(ScenarioError) as exc:
        load_catalogue([tmp_path])
    assert message in exc.value.message("en")
    assert "bad.toml" in exc.value.message("en")


def test_two_providers_may_ship_the_same_file_name_and_keep_their_real_paths(tmp_path):
    from tests.harness_run import run_harness

    text = ('[[scenario]]\nid = "{sid}"\ntitle = {{ fr = "t", en = "t" }}\nrequirements = ["LES-3.1-CHANNELS"]\nprofiles = ["lgc"]\n'
            'criticality = "minor"\nproof = "text"\ntags = ["mine"]\ncollect = ["version.ui", "version.api"]\nchecks = ["version.same_in_channels"]\n')
    for provider in ("acme", "other"):
        (tmp_path / provider).mkdir()
        (tmp_path / provider / "extra.toml").write_text(text.format(sid=f"{provider}-channels"))
    run = run_harness(tmp_path, "--scenario", "mine", "--scenario-dir", "acme", "--scenario-dir", "other")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "acme/extra.toml" in run.stdout and "other/extra.toml" in run.stdout
    assert [s["file"] for s in run.manifest["scenarios"]] == ["acme/extra.toml", "other/extra.toml"]
    listed = run_harness(tmp_path, "--collect-only", "-q", "--scenario", "mine", "--scenario-dir", "acme", "--scenario-dir", "other")
    assert "acme/extra.toml::acme-channels" in listed.stdout and "other/extra.toml::other-channels" in listed.stdout


def test_each_builtin_plugin_ships_its_scenario_files_as_a_third_party_does():
    from harness.running.plugins import builtin_plugins

    root = Path(__file__).parents[1]
    assert not (root / "scenarios").exists(), "no top-level scenario folder: each plugin ships its own"
    dirs = scenario_dirs(get_plugin_manager())
    shipped = {d.parent.name for d in dirs}
    assert {"harness_cda", "harness_dmp", "harness_ins", "harness_label", "harness_mssante", "harness_pdsm", "harness_psc", "harness_terminology",
            "harness_version"} == shipped
    assert all(d.name == "scenarios" and list(d.glob("*.toml")) for d in dirs)
    assert len(builtin_plugins()) == 11  # the demo and the XDS library ship no scenario


def test_a_blocked_plugins_scenarios_are_read_as_data_and_set_aside_and_its_requirements_stay_known(monkeypatch):
    from harness.running.assembly import assemble

    monkeypatch.setenv("HARNESS_BLOCK_PLUGINS", "harness-terminology")
    assembly = assemble()
    # the DMP and MSSanté scenarios that prove SMT-VALUESET need the blocked plugin's check
    assert {"SMT-VALUESET", "SMT-CODE"} <= set(assembly.catalogue.requirements)
    assert {"terminology-cda-valuesets", "dmp-submitted-valuesets", "mssante-codes"} <= set(assembly.unavailable)
    assert "harness-terminology" in assembly.unavailable["dmp-submitted-valuesets"].render("en")
    assert "dmp-feed" in assembly.catalogue.scenarios  # the rest runs


def test_each_requirement_id_is_written_once_in_the_scenario_files_and_never_in_code():
    """A requirement's id lives in its scenario file; a check's findings cite the requirement
    of the scenario it runs for, so no code names one (a constant drifts from the file)."""
    import ast

    root = Path(__file__).parents[1]
    ids = set(load_catalogue(scenario_dirs(get_plugin_manager())).requirements)
    written: dict[str, int] = {}
    for toml in sorted(root.glob("plugins/*/scenarios/*.toml")):
        for line in toml.read_text(encoding="utf-8").splitlines():
            if line.startswith('id = "') and line[6:-1] in ids:
                written[line[6:-1]] = written.get(line[6:-1], 0) + 1
    assert written == dict.fromkeys(ids, 1)
    for source in sorted([*root.glob("harness/**/*.py"), *root.glob("plugins/**/*.py")]):
        named = {n.value for n in ast.walk(ast.parse(source.read_text(encoding="utf-8"))) if isinstance(n, ast.Constant) and n.value in ids}
        assert not named, f"{source.relative_to(root)} names requirement ids {sorted(named)}"
