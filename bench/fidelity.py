"""Verdict fidelity: run a fixed matrix of scenario runs and keep each bundle, so that the
bundles of two versions of the harness can be compared with ``harness compare``.

    python bench/fidelity.py --out /tmp/after                       # this checkout
    python bench/fidelity.py --out /tmp/before --python OLD/.venv/bin/python --root OLD
    harness compare /tmp/before /tmp/after

The matrix: the embedded demo (every scenario), the demo with each of its defects, the
official CDA kit target (every scenario) and the official HL7 v2 target (INS). The
official targets need ../shared/corpus and are left out when it is absent.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def defects(python: str, root: Path) -> list[str]:
    code = "from harness_demo.app import DEFECTS; print('\\n'.join(sorted(DEFECTS)))"
    return subprocess.run([python, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout.split()


def matrix(python: str, root: Path, corpus: bool) -> dict[str, list[str]]:
    runs = {"demo": ["--scenario", "all"]}
    for d in defects(python, root):
        runs[f"demo-{d}"] = ["--scenario", "all", "--defect", d]
    if corpus:
        runs["official-kit"] = ["-n", "2", "--scenario", "all", "--target", str(root / "fixtures/targets/official-kit.toml")]
        runs["official-hl7v2"] = ["--scenario", "ins", "--target", str(root / "fixtures/targets/official-hl7v2.toml")]
    return runs


def run(python: str, root: Path, out: Path, name: str, args: list[str]) -> tuple[str, int, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HARNESS_"))}
    t0 = time.monotonic()
    proc = subprocess.run([python, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args, "--evidence-dir", str(out / name)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=900)
    return name, proc.returncode, time.monotonic() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder receiving one sub-folder (one bundle) per run")
    p.add_argument("--python", default=sys.executable, help="the Python of the harness version to run")
    p.add_argument("--root", type=Path, default=ROOT, help="that version's checkout (targets are read there)")
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()
    corpus = (args.root.resolve().parent / "shared" / "corpus").is_dir() or (ROOT.parent / "shared" / "corpus").is_dir()
    runs = matrix(args.python, args.root.resolve(), corpus)
    args.out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        for name, rc, seconds in pool.map(lambda item: run(args.python, args.root.resolve(), args.out.resolve(), *item), runs.items()):
            print(f"{name:<40} exit {rc}  {seconds:6.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
