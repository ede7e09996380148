"""Hooks of the DMP plugin: built-in CDA checks (no kit), and the DMP simulator.

Domain libraries it uses: :mod:`harness_cda.document` and :mod:`harness_cda.level1` (CDA
reading, level-1 model), :mod:`harness_ins.identity` and :mod:`harness_ins.cda` (INS rules).
"""
from __future__ import annotations

from harness import hookimpl

from . import checks


@hookimpl
def harness_checks():
    return checks.document_checks()
