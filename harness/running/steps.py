"""The steps scenarios are made of: collectors, checks and coded-value extractors.

A collector declares the inputs it produces and a check the inputs it reads (inputs are
named ``NAME`` or ``NAME/ITEM``; declarations name the ``NAME``):

    @harness.collector(produces=["ui.page", "ui.exchange"])
    def collect_ui(ctx): ...

    @harness.check(reads=["ui.page", "ui.exchange"])
    def check_visible(ctx, ev): ...

The registry gathers every plugin's steps by name; :func:`wiring_problems` tells, before
anything runs, which scenario refers to a step nobody provides or makes a check read an
input none of its collectors produces.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol

import pluggy

from ..errors import PluginError
from ..messages import Message, catalogue

if TYPE_CHECKING:
    from .context import CheckContext, CollectContext
    from .scenarios import Scenario
    from ..terminology.model import CodedValue
    from ..verdicts import Evaluation

M = catalogue(__name__)
ANY_INPUT = "*"  # a check that reads every input of its scenario (terminology: any document)


class Collector(Protocol):
    produces: tuple[str, ...]

    def __call__(self, ctx: "CollectContext") -> Mapping[str, Any]: ...


class Check(Protocol):
    reads: tuple[str, ...]

    def __call__(self, ctx: "CheckContext", ev: "Evaluation") -> None: ...


class CodedValueExtractor(Protocol):
    def __call__(self, ctx: "CheckContext", name: str) -> "list[CodedValue] | None": ...


def collector(*, produces: Iterable[str], once_per_run: bool = False, alters: bool = False) -> Callable[[Callable], Callable]:
    """Declare a collector and the inputs (``NAME``, for ``NAME`` or ``NAME/ITEM``) it produces.

    ``once_per_run``: what it collects must be collected once for the whole run, even on
    several processes (a simulator the software calls, a feed it sends once): under
    pytest-xdist, the first process to need it collects, under a lock the processes share, and
    every other reads what it recorded: every scenario is judged on the same exchanges.

    ``alters``: collecting it changes what the software shows other steps (it registers patients,
    who then appear in its feeds and documents). The scenarios that use it run after every
    scenario that does not, in a serial run and under pytest-xdist alike (the process that
    collects it waits for the others: :meth:`harness.session.live.LiveSession`), so what every
    other scenario judged, and how many things, does not depend on the order.
    """
    names = tuple(produces)

    def mark(fn: Callable) -> Callable:
        fn.produces = names  # type: ignore[attr-defined]
        fn.once_per_run = once_per_run  # type: ignore[attr-defined]
        fn.alters = alters  # type: ignore[attr-defined]
        return fn

    return mark


def alters(scenario: "Scenario", registry: "Registry") -> bool:
    """Whether a collector of ``scenario`` changes what the software shows (:func:`collector`)."""
    return any(getattr(registry.collectors.get(name), "alters", False) for name in scenario.collect)


def check(*, reads: Iterable[str], optional: Iterable[str] = ()) -> Callable[[Callable], Callable]:
    """Declare a check and the inputs it reads (``"*"``: every input of its scenario).

    ``optional``: inputs it also reads when its scenario gathers them, which a scenario need not
    collect (the version check compares the documents a scenario gathered, if any; inputs only
    bundles of an earlier version hold)."""
    extra = tuple(optional)
    names = tuple(reads) + extra

    def mark(fn: Callable) -> Callable:
        fn.reads = names  # type: ignore[attr-defined]
        fn.optional = extra  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass
class Registry:
    collectors: dict[str, Collector]
    checks: dict[str, Check]
    extractors: dict[str, CodedValueExtractor] = field(default_factory=dict)
    owners: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, step) -> plugin


def _contributions(pm: pluggy.PluginManager, hook_name: str) -> list[tuple[str, Mapping]]:
    out = []
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        result = impl.function()
        if result:
            out.append((impl.plugin_name, result))
    return out


def _merge(results: list[tuple[str, Mapping]], kind: str, owners: dict, declared: str | None) -> dict:
    merged: dict[str, Any] = {}
    for plugin_name, mapping in results:
        for name, fn in mapping.items():
            if (kind, name) in owners:
                first, second = sorted((owners[(kind, name)], plugin_name))
                raise PluginError(M("step.twice", kind=kind, name=name, first=first, second=second))
            if declared is not None and not isinstance(getattr(fn, declared, None), tuple):
                key = "step.undeclared.collect" if declared == "produces" else "step.undeclared.check"
                raise PluginError(M(key, name=name, plugin=plugin_name))
            merged[name], owners[(kind, name)] = fn, plugin_name
    return merged


def build_registry(pm: pluggy.PluginManager) -> Registry:
    owners: dict[tuple[str, str], str] = {}
    return Registry(
        collectors=_merge(_contributions(pm, "harness_collectors"), "collect", owners, "produces"),
        checks=_merge(_contributions(pm, "harness_checks"), "check", owners, "reads"),
        extractors=_merge(_contributions(pm, "harness_coded_values"), "coded-values", owners, None),
        owners=owners,
    )


def wiring_problems(scenario: "Scenario", registry: Registry) -> list[Message]:
    """What makes ``scenario`` impossible to run with the installed steps (empty: none)."""
    problems = []
    produced: set[str] = set()
    for name in scenario.collect:
        fn = registry.collectors.get(name)
        if fn is None:
            problems.append(M("step.unknown", kind="collect", name=name))
        else:
            produced.update(fn.produces)
    for name in scenario.checks:
        fn = registry.checks.get(name)
        if fn is None:
            problems.append(M("step.unknown", kind="check", name=name))
            continue
        missing = sorted(set(fn.reads) - produced - {ANY_INPUT} - set(getattr(fn, "optional", ())))
        if missing and all(c in registry.collectors for c in scenario.collect):
            problems.append(M("step.unwired", check=name, inputs=", ".join(missing), collect=", ".join(scenario.collect) or "-"))
    return problems
