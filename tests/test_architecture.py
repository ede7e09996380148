"""The house's layering ([tool.importlinter] in pyproject.toml) holds: the core imports no
plugin, plugins import only downwards (the demo is on top: nothing imports it), and no
module imports one that imports it back. CI runs `lint-imports` too; this test says which
contract broke in the suite's own report."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_the_architecture_contracts_are_kept():
    proc = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    kept = [line for line in proc.stdout.splitlines() if line.endswith(" KEPT")]
    broken = [line for line in proc.stdout.splitlines() if line.endswith(" BROKEN")]
    assert proc.returncode == 0 and not broken, proc.stdout[-3000:] + proc.stderr[-1000:]
    assert len(kept) == 3, proc.stdout[-2000:]
