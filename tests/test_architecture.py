"""The house's layering ([tool.importlinter] in pyproject.toml) holds: the core imports no
plugin, plugins import only downwards (the demo is on top: nothing imports it), the core's
own packages are layered too, and no module imports one that imports it back. CI runs
`lint-imports` too; this test says which contract broke in the suite's own report, and
shows the contracts catch what they forbid. docs/architecture.md tells the same layering."""
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]
LINT = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]


def _verdicts(stdout: str) -> dict[str, str]:
    """Contract name -> KEPT or BROKEN (a long name wraps over lines in the report)."""
    text = " ".join(stdout.split("\n"))
    return {c["name"]: ("KEPT" if re.search(re.escape(c["name"]).replace(r"\ ", r"\s+") + r"\s+KEPT", text) else "BROKEN")
            for c in _contracts()}


def test_the_architecture_contracts_are_kept():
    proc = subprocess.run(LINT, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
    assert set(_verdicts(proc.stdout).values()) == {"KEPT"} and len(_contracts()) == 4, proc.stdout[-2000:]


def test_the_contracts_catch_a_plugin_importing_the_demo_and_the_core_importing_a_plugin(tmp_path):
    """A copy of the house with two forbidden imports: each breaks its contract, named."""
    copy = tmp_path / "house"
    copy.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "locale", "templates", "builtin", "history", "catalogue", "*.toml", "*.zip")
    shutil.copytree(ROOT / "harness", copy / "harness", ignore=ignore)
    shutil.copytree(ROOT / "plugins", copy / "plugins", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    checks = copy / "plugins" / "harness_dmp" / "checks.py"
    checks.write_text(checks.read_text() + "\nfrom harness_demo import patients  # noqa\n")
    steps = copy / "harness" / "running" / "steps.py"
    steps.write_text(steps.read_text() + "\nimport harness_cda  # noqa\n")
    env = {"PYTHONPATH": f"{copy}:{copy / 'plugins'}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(LINT, cwd=copy, capture_output=True, text=True, timeout=120, env=env)
    verdicts = _verdicts(proc.stdout)
    assert proc.returncode != 0
    assert verdicts["The core imports no plugin"] == "BROKEN" and "harness.running.steps -> harness_cda" in proc.stdout, proc.stdout[-3000:]
    layers = next(c["name"] for c in _contracts() if c["name"].startswith("Plugins in layers"))
    assert verdicts[layers] == "BROKEN" and "harness_dmp.checks -> harness_demo" in proc.stdout, proc.stdout[-3000:]


def test_the_architecture_page_tells_the_layering_of_the_contracts():
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    contracts = {c["name"]: c for c in _contracts()}
    plugins = next(c for c in contracts.values() if c["name"].startswith("Plugins in layers"))
    core = next(c for c in contracts.values() if c["name"].startswith("The core in layers"))
    # the plugins, top to bottom, in the page's picture in the contract's order
    section = page[page.index("## Plugins, in layers"):page.index("Who may import whom")]
    picture = section[section.index("```"):section.rindex("```")]
    order = [name for layer in plugins["layers"] for name in layer.split(" | ")]
    at = lambda text: lambda name: re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", text).start()  # noqa: E731
    assert sorted(order, key=at(picture)) == order
    # the core's packages, top to bottom, as the page lists them
    listing = page[page.index("Inside the core, a package imports only"):page.index("## Plugins, in layers")]
    core_order = [name.strip() for layer in core["layers"] for name in layer.split("|")]
    assert sorted(core_order, key=at(listing)) == core_order
    for package in ("cli", "session", "proof", "reporting", "evidence", "running", "terminology", "services", "safety"):
        assert (ROOT / "harness" / package).is_dir() or (ROOT / "harness" / f"{package}.py").is_file(), package
