"""The harness hook API: every extension point, in the order a run calls it.

A plugin is a module (or object) with functions named after these specs, marked with
``harness.hookimpl``, exposed through the ``harness.plugins`` entry-point group. Built-in
plugins use this API and nothing else.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..markers import hookspec

if TYPE_CHECKING:
    import pytest

    from .context import Service, ServiceContext
    from .steps import Check, CodedValueExtractor, Collector
    from ..evidence.summary import ReportSection, SummaryContext
    from .target import Target


# -- 1. Configuration: before anything runs -------------------------------------------


@hookspec
def harness_addoption(group: "pytest.OptionGroup") -> None:
    """Add command-line options to scenario runs (``pytest --scenario ...``).

    Called once when pytest parses its command line, before any target is read. ``group``
    is pytest's "harness" option group: call ``group.addoption("--name", dest="...")``
    as with argparse; choose a ``dest`` that no other plugin uses. The values reach the
    plugin through :func:`harness_configure`. Nothing is returned.
    """


@hookspec
def harness_commands(subparsers: "argparse._SubParsersAction") -> None:
    """Add subcommands to the ``harness`` command line.

    Called once when ``harness`` parses its arguments. Add a parser with
    ``subparsers.add_parser(name, help=...)`` and ``set_defaults(func=run,
    plugin_command=True)``: ``run(args, ctx: harness.CommandContext) -> int`` is called
    with the parsed arguments (``ctx.lang``, ``ctx.load_target()``, ``ctx.start_service()``)
    and returns the exit status. Nothing is returned.
    """


@hookspec
def harness_target_schema() -> Mapping[str, Mapping[str, str]]:
    """Declare the target-file sections and keys this plugin reads.

    Called once when a target file is loaded, before any scenario runs.
    Return a mapping from section path (``"product"``, ``"services.demo-vendor"``) to a
    mapping of key to type (``str``, ``int``, ``bool``, ``url``, ``path``, ``secret``,
    ``list[str]``, ``list[path]``; a trailing ``!`` marks the key required; key ``*``
    accepts any key of that type). Sections nobody declares are refused, so a typo in a
    target file is an error, not a silently ignored key. All results are merged; a key
    (or a whole ``*`` section) declared by two plugins is an error at start naming both.
    Collectors and checks read the values as ``ctx.target.section(name)``, paths resolved.
    """


@hookspec(firstresult=True)
def harness_default_target() -> Path | None:
    """Return the path of the target file to use when the user names none.

    Called once at start when ``--target`` is absent. First non-None result wins: the
    embedded demo vendor provides one, so the main command works on a fresh machine.
    """


@hookspec
def harness_scenario_dirs() -> list[Path]:
    """Return folders of scenario files (TOML) this plugin ships.

    Called once at start, before collection. Every plugin's folders (the built-in plugins
    ship theirs this way too) are merged with the user's ``--scenario-dir`` folders;
    scenario ids must be unique across all of them. Keep them in a ``scenarios`` folder
    beside the plugin's module: when the plugin is blocked, the harness still reads that
    folder as data, so its scenarios are set aside with the reason and the requirements it
    defines stay known to other plugins' scenarios.
    """


@hookspec
def harness_configure(options: Mapping[str, Any], target: "Target") -> None:
    """Apply this plugin's command-line options to the run, once the target is read.

    Called once per scenario run in every process of the run (each pytest-xdist worker
    reads the target too), after the target file (and ``--set``) is loaded and before any
    scenario runs. ``options`` maps every option's
    ``dest`` to its value; a plugin reads its own (added in :func:`harness_addoption`) and
    may adjust the target (``target.set_service_option``), which the bundle then records.
    Raise :class:`harness.HarnessError` for a usage error: the run stops with exit code 4.
    """


# -- 2. Registration: the step implementations scenarios refer to by name --------------


@hookspec
def harness_collectors() -> Mapping[str, "Collector"]:
    """Return the collectors this plugin implements, by step name (``"version.observations"``).

    Called once at start. A collector is ``collect(ctx: CollectContext) -> Mapping[str,
    Artefact]``, declared with ``@harness.collector(produces=[...])``: it talks to the
    target (through ``ctx.http``, ``ctx.endpoint``...), records what it received with
    ``ctx.record`` and returns the recorded artefacts by input name (``NAME`` or
    ``NAME/ITEM``, NAME among those it declares). Collectors run live only; replay uses
    what they recorded. A name provided by two plugins, or a collector that declares
    nothing, is an error at start.
    """


@hookspec
def harness_checks() -> Mapping[str, "Check"]:
    """Return the checks this plugin implements, by step name (``"version.visible_in_ui"``).

    Called once at start. A check is ``check(ctx: CheckContext, ev: Evaluation) -> None``,
    declared with ``@harness.check(reads=[...])``: a pure function of the inputs it
    declares (``ctx.read``, ``ctx.json``, ``ctx.xml``, ``ctx.items``) and of the target as
    recorded (``ctx.target``). It must not touch the network or the clock, so that
    ``harness verify --replay`` reproduces its verdict from the bundle alone. A name
    provided by two plugins, or a check that declares nothing, is an error at start.
    """


@hookspec
def harness_coded_values() -> Mapping[str, "CodedValueExtractor"]:
    """Return the extractors of coded values this plugin implements, by name (``"cda"``).

    Called once at start. An extractor is ``extract(ctx: CheckContext, name: str) ->
    list[CodedValue] | None``: given one recorded input, it returns the coded values it
    finds there (CDA elements, XDM slots, HL7 v2 fields, FHIR codings), each with the value
    set its context requires, or None when the input is not of its kind; it raises
    :class:`harness.UnsafeInput` when the input is of its kind but cannot be read, which
    the terminology checks report (a document whose codes were not judged is no PASS). Terminology
    scenarios call every extractor on every input, both live (to know what to ask the
    terminology server) and in checks and replay (to judge the recorded answers), so an
    extractor must be a pure function of the recorded bytes. A name provided by two
    plugins is an error.
    """


# -- 3. Live run: services the target asks for ----------------------------------------


@hookspec(firstresult=True)
def harness_start_service(name: str, options: Mapping[str, object], ctx: "ServiceContext") -> "Service | None":
    """Start the service ``name`` the target lists under ``[services.<name>]``.

    Called lazily, the first time a collector needs the service (at most once per process:
    each pytest-xdist worker starts its own). Return a running :class:`Service` (base URL
    on loopback, ``stop()``) or None when this plugin does not provide ``name``. The first
    non-None result wins; the harness stops every started service at the end of the run.
    """


# -- 4. Reporting: after the run ------------------------------------------------------


@hookspec
def harness_report_sections(summary: "SummaryContext") -> "list[ReportSection]":
    """Return sections this plugin adds to the human summary of a bundle.

    Called when a run's bundle is sealed, once per language (``summary.lang``), with the
    manifest, the findings and the recorded artefacts (``summary.read_artefact``). Return
    :class:`harness.ReportSection` items (a title and lines, each a message or text), or
    an empty list when the run holds nothing of this plugin's. Sections appear after the
    verdicts, in plugin registration order, in the summary files and on the terminal.
    """
