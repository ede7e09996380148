"""Hooks of the label files plugin: the transcoding table and the reversibility export (collectors, checks, target sections).

Domain libraries it uses: :mod:`harness_ins.fhir`, :mod:`harness_ins.cda`, :mod:`harness_ins.hl7v2`
and :mod:`harness_ins.identity` (the patients and their identities, in an export as in the
environment's channels), :mod:`harness_cda.document` and :mod:`harness_cda.rules` (an exported
document read and judged as the CDA plugin's built-in rules judge one); the terminology through
:mod:`harness.terminology`."""
from __future__ import annotations

from pathlib import Path

from harness import hookimpl

from . import export, transcoding


@hookimpl
def harness_scenario_dirs():
    """Its scenario files, shipped with it (a third party ships theirs the same way)."""
    return [Path(__file__).with_name("scenarios")]


@hookimpl
def harness_target_schema():
    return {transcoding.SECTION: {"file": "path", "format": "str", "encoding": "str", "delimiter": "str", "sheet": "str", "header_row": "int",
                                  "source_column": "str", "target_column": "str", "source_system": "str", "target_system": "str",
                                  "concept_map": "str", "source_value_set": "str", "min_coverage": "int"},
            export.SECTION: {"file": "path", "format": "str", "documented": "list[str]", "csv_schema": "path", "csv_patients": "list[str]",
                             "csv_traits": "list[str]"}}


@hookimpl
def harness_collectors():
    return {"label.transcoding": transcoding.collect_transcoding, "label.export": export.collect_export}


@hookimpl
def harness_checks():
    return {"label.table_file": transcoding.check_file, "label.source_codes": transcoding.check_source_codes,
            "label.target_codes": transcoding.check_target_codes, "label.coverage": transcoding.check_coverage,
            "label.official_map": transcoding.check_official_map, "label.export_format": export.check_format,
            "label.export_open": export.check_open, "label.export_complete": export.check_complete, "label.export_identity": export.check_identity}
