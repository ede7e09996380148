"""The plugin system: one documented hook API, entry-point loading, blocking, strictness."""
import inspect
import re
from pathlib import Path

import pluggy
import pytest

import harness
from harness import HarnessError, hookimpl
from harness.running import hookspecs
from harness.running.plugins import ENTRY_POINT_GROUP, builtin_plugins, get_plugin_manager
from harness.running.steps import build_registry

DOCS = Path(__file__).parents[1] / "docs" / "plugins.md"


def _hooks():
    return [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("harness_")]


def test_every_hook_is_documented_in_code_and_in_the_plugin_guide():
    documented = set(re.findall(r"^### (harness_\w+)$", DOCS.read_text(), re.MULTILINE))
    hooks = _hooks()
    assert hooks, "no hook found"
    for name in hooks:
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and len(fn.__doc__.split()) >= 15, f"{name} has no real docstring"
        assert "Called" in fn.__doc__, f"{name} does not say when it is called"
        assert fn.__annotations__.get("return"), f"{name} has no return type"
        params = inspect.signature(fn).parameters
        assert all(name in fn.__annotations__ for name in params), f"{name} has untyped parameters"
    assert documented == set(hooks), f"docs/plugins.md out of sync: {documented ^ set(hooks)}"


def test_hook_names_carry_the_prefix_and_are_listed_in_lifecycle_order():
    source = inspect.getsource(hookspecs)
    in_order = re.findall(r"^def (harness_\w+)\(", source, re.MULTILINE)
    assert in_order == ["harness_addoption", "harness_commands", "harness_target_schema", "harness_default_target",
                        "harness_scenario_dirs", "harness_configure", "harness_collectors", "harness_checks", "harness_coded_values",
                        "harness_start_service", "harness_report_sections"]


def test_builtin_plugins_load_through_entry_points():
    """The built-in list is the distribution's own entry points, every one of the packages
    under plugins/ that has a plugin module, each loaded from its entry point."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).parents[1]
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"][ENTRY_POINT_GROUP]
    shipped = {p.name.replace("_", "-") for p in (root / "plugins").iterdir() if (p / "plugin.py").exists()}
    assert set(builtin_plugins()) == set(declared) == shipped
    pm = get_plugin_manager()
    dists = {pm.get_name(p) for p, _ in pm.list_plugin_distinfo()}
    assert set(builtin_plugins()) <= dists, "built-ins must come from entry points, like third parties"


def test_a_plugin_can_be_blocked_by_name(monkeypatch):
    monkeypatch.setenv("HARNESS_BLOCK_PLUGINS", "harness-version")
    pm = get_plugin_manager()
    assert pm.get_plugin("harness-version") is None
    assert pm.is_blocked("harness-version")
    assert "version.visible_in_ui" not in build_registry(pm).checks


def test_a_misspelt_hook_fails_loudly():
    class Typo:
        @hookimpl
        def harness_chekcs(self):
            return {}

    pm = get_plugin_manager()
    pm.register(Typo())
    with pytest.raises(pluggy.PluginValidationError):
        pm.check_pending()


def test_two_plugins_providing_the_same_step_is_an_error():
    class Clash:
        @hookimpl
        def harness_checks(self):
            return {"version.visible_in_ui": lambda ctx, ev: None}

    pm = get_plugin_manager()
    pm.register(Clash(), name="clash")
    with pytest.raises(HarnessError) as exc:
        build_registry(pm)
    assert "clash" in exc.value.message("en") and "harness-version" in exc.value.message("en")


def test_core_does_not_import_plugins():
    core = Path(harness.__file__).parent
    files = sorted(core.rglob("*.py"))
    assert any(f.parent != core for f in files), "sub-packages are covered too"
    for file in files:
        text = file.read_text()
        assert not re.search(r"^\s*(from|import) harness_", text, re.MULTILINE), file
        assert "import_module(\"harness_" not in text and "__import__(\"harness_" not in text, file


def test_plugins_use_the_public_surface_only():
    plugins = Path(__file__).parents[1] / "plugins"
    public = {"harness", "harness.terminology"}
    for file in sorted(plugins.rglob("*.py")):
        for m in re.finditer(r"^\s*(?:from|import) (harness(?:\.[\w.]+)?)\b", file.read_text(), re.MULTILINE):
            assert m.group(1) in public, f"{file}: imports {m.group(1)}"


def test_public_surface_is_pinned():
    assert sorted(harness.__all__) == sorted([
        "ANY_INPUT", "ArchiveLimits", "Artefact", "BoundedServer", "Bundle", "BundleError", "Catalogue", "CheckContext",
        "CollectContext", "CommandContext", "ConnectionBounds", "Evaluation", "Exchange", "Finding", "HarnessError", "HttpService", "Issued",
        "Localized", "Message", "NotApplicable", "PluginError", "Problem", "RecordedRun", "ReportSection", "Request", "Response", "Revocation", "SafeArchive",
        "ScenarioError", "Service", "ServiceContext", "ServiceStopError", "Severity", "SummaryContext", "Target", "TargetError", "TestPKI",
        "Text", "UnsafeInput", "Verdict", "atomic_write", "browser", "catalogue", "check", "check_revocation", "collector", "core_version", "hookimpl",
        "is_loopback", "iter_xml", "parse_json", "parse_xml", "pki", "verify_bundle",
    ])
    assert harness.pki.__name__ == "harness.services.pki"  # the test PKI's helpers, a module
    assert harness.browser.__name__ == "harness.services.browser"  # the real browser, a module
    assert isinstance(harness.hookimpl, pluggy.HookimplMarker) and harness.hookimpl.project_name == "harness"
    for name in set(harness.__all__) - {"hookimpl", "ANY_INPUT", "Localized", "pki", "browser"}:
        assert getattr(harness, name).__module__.startswith("harness."), name


def test_a_plugin_can_ship_scenario_folders(tmp_path):
    from harness.running.scenarios import load_catalogue
    from harness.running.assembly import scenario_dirs

    (tmp_path / "extra.toml").write_text(
        '[[scenario]]\nid = "extra-channels"\ntitle = { fr = "f", en = "e" }\nrequirements = ["LES-3.1-CHANNELS"]\n'
        'profiles = ["lgc"]\ncriticality = "minor"\nproof = "text"\ntags = ["extra"]\n'
        'collect = ["version.ui", "version.api"]\nchecks = ["version.same_in_channels"]\n'
    )

    class Shipper:
        @hookimpl
        def harness_scenario_dirs(self):
            return [tmp_path]

    pm = get_plugin_manager()
    pm.register(Shipper())
    cat = load_catalogue(scenario_dirs(pm))
    assert [s.id for s in cat.select(["extra"])] == ["extra-channels"]


def test_blocking_one_plugin_leaves_the_targets_of_the_others_valid(tmp_path):
    """[cda] documents is read by the INS and terminology plugins too: blocking the CDA kit
    plugin must not turn a target that names it into an error."""
    from harness_demo.patients import PATIENTS, cda_document
    from tests.harness_run import run_harness

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "one.xml").write_bytes(cda_document(PATIENTS[0], set(), 1))
    target = tmp_path / "t.toml"
    target.write_text('[product]\nid = "p"\nname = "P"\nversion = "1.0"\n\n[cda]\ndocuments = "docs"\n')
    blocked = {"HARNESS_BLOCK_PLUGINS": "harness-cda"}
    run = run_harness(tmp_path, "--scenario", "ins-cda", "--target", str(target), env=blocked)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.requirement_verdicts() == {"INS-CDA": "PASS"}
    # the blocked plugin's scenarios are set aside and say why
    run = run_harness(tmp_path, "--scenario", "cda-kit-xsd", "--target", str(target), env=blocked)
    assert run.returncode == 4 and "cda-kit-xsd : indisponible (Étape collect inconnue : cda.documents" in run.stderr
    assert "greffons bloqués : harness-cda" in run.stderr
    # a key only the blocked plugin declares: the error says which plugins are blocked
    target.write_text(target.read_text() + 'kit = "kit"\n')
    run = run_harness(tmp_path, "--scenario", "ins-cda", "--lang", "en", "--target", str(target), env=blocked)
    assert run.returncode == 4 and "cda.kit: unknown key (allowed keys: documents); blocked plugins: harness-cda" in run.stderr


def test_an_unmarked_or_misspelt_hook_is_refused_at_start_with_the_hooks_meant():
    from harness import PluginError
    from harness.running.plugins import check_contract

    class Forgetful:  # no @hookimpl: still a hook implementation
        def harness_chekcs(self):
            return {}

    pm = get_plugin_manager()
    pm.register(Forgetful(), name="forgetful")
    with pytest.raises(PluginError) as exc:
        check_contract(pm)
    assert exc.value.message("en") == "Plugin forgetful: function harness_chekcs matches no hook of the harness; did you mean: harness_checks?"


def test_an_unmarked_hook_with_a_right_name_is_called():
    class Quiet:
        def harness_target_schema(self):
            return {"quiet": {"level": "int"}}

    pm = get_plugin_manager()
    pm.register(Quiet(), name="quiet")
    from harness.running.assembly import target_schema

    assert target_schema(pm)["quiet"] == {"level": "int"}


def test_a_target_key_declared_by_two_plugins_is_an_error_naming_both():
    from harness import PluginError
    from harness.running.assembly import target_schema

    class Greedy:
        @hookimpl
        def harness_target_schema(self):
            return {"terminology": {"*": "str"}}

    pm = get_plugin_manager()
    pm.register(Greedy(), name="greedy")
    with pytest.raises(PluginError) as exc:
        target_schema(pm)
    assert "declared by two plugins: greedy and harness-core" in exc.value.message("en")


def test_a_scenario_whose_check_reads_what_no_collector_produces_is_refused_at_start(tmp_path):
    from harness import ScenarioError
    from harness.running.assembly import assemble

    (tmp_path / "wired.toml").write_text(
        '[[scenario]]\nid = "miswired"\ntitle = { fr = "f", en = "e" }\nrequirements = ["LES-3.1-CHANNELS"]\n'
        'profiles = ["lgc"]\ncriticality = "minor"\nproof = "text"\n'
        'collect = ["version.ui"]\nchecks = ["version.same_in_channels", "version.visibel_in_ui"]\n'
    )
    with pytest.raises(ScenarioError) as exc:
        assemble([tmp_path])
    text = exc.value.message("en")
    assert "scenario miswired" in text and "wired.toml" in text
    assert "check version.same_in_channels reads api.about, api.exchange, which none of its collect steps (version.ui) produces" in text
    assert "Unknown check step: version.visibel_in_ui" in text
