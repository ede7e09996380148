"""Scenarios are data: TOML files that name requirements, collectors and checks.

A scenario file holds ``[[requirement]]`` entries (what is proven, in French and English,
with its source) and ``[[scenario]]`` entries (how it is proven).
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import ScenarioError
from ..messages import Localized, catalogue

M = catalogue(__name__)

CRITICALITIES = ("minor", "major", "critical")
LEVELS = ("must", "may")


@dataclass(frozen=True)
class Requirement:
    id: str
    source: str
    level: str
    text: dict[str, str]
    # the identifiers of the official referencing this requirement answers (a REM's, a
    # convention's article), shown in the coverage matrix
    official_ids: tuple[str, ...] = ()
    file: Path | None = field(default=None, compare=False)

    def to_json(self) -> dict:
        d = {"id": self.id, "source": self.source, "level": self.level, "text": dict(self.text)}
        if self.official_ids:
            d["official_ids"] = list(self.official_ids)
        return d


@dataclass(frozen=True)
class Scenario:
    id: str
    title: dict[str, str]
    requirements: tuple[str, ...]
    profiles: tuple[str, ...]
    criticality: str
    proof: str
    tags: tuple[str, ...]
    collect: tuple[str, ...]
    checks: tuple[str, ...]
    file: Path = field(compare=False)
    # "all": any collector the target does not configure makes the scenario NOT_RUN;
    # "any": it runs on what the configured collectors gathered (NOT_RUN if none applies).
    collect_mode: str = "all"

    @property
    def shown_path(self) -> str:
        """The scenario file as reports and node ids show it: relative to the current folder
        when inside it, else absolute (two providers may ship files of the same name)."""
        return shown_path(self.file)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "title": dict(self.title),
            "requirements": list(self.requirements),
            "profiles": list(self.profiles),
            "criticality": self.criticality,
            "proof": self.proof,
            "tags": list(self.tags),
            "collect": list(self.collect),
            "checks": list(self.checks),
            "file": self.shown_path,
            **({"collect_mode": self.collect_mode} if self.collect_mode != "all" else {}),
        }

    @classmethod
    def from_json(cls, d: dict) -> "Scenario":
        return cls(d["id"], dict(d["title"]), tuple(d["requirements"]), tuple(d.get("profiles", ())), d.get("criticality", ""),
                   d.get("proof", ""), tuple(d.get("tags", ())), tuple(d.get("collect", ())), tuple(d["checks"]), Path(d.get("file", "-")),
                   d.get("collect_mode", "all"))


def shown_path(file: Path) -> str:
    try:
        return file.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(file.resolve())


@dataclass
class Catalogue:
    scenarios: dict[str, Scenario]
    requirements: dict[str, Requirement]
    # scenarios set aside because a blocked plugin provides some of their steps: id -> why
    unavailable: dict[str, Localized] = field(default_factory=dict)

    def names(self) -> list[str]:
        """Every name ``--scenario`` accepts: ``all``, scenario ids and tags."""
        tags = {tag for s in self.scenarios.values() for tag in s.tags}
        return ["all", *sorted(self.scenarios), *sorted(tags - set(self.scenarios))]

    def select(self, names: Iterable[str]) -> list[Scenario]:
        """Scenarios matching ids or tags, in catalogue order; an unknown name fails fast."""
        names = list(names)
        chosen: set[str] = set()
        for name in names:
            if name == "all":
                chosen.update(self.scenarios)
                continue
            hits = {s.id for s in self.scenarios.values() if s.id == name or name in s.tags}
            if not hits and name in self.unavailable:
                raise ScenarioError(self.unavailable[name])
            if not hits:
                known = ", ".join(self.names())
                raise ScenarioError(M("scenario.unknown", name=name, known=known))
            chosen.update(hits)
        return [s for sid, s in self.scenarios.items() if sid in chosen]

    def unproven(self, names: Iterable[str], proven: Iterable[str]) -> dict[str, dict]:
        """Requirements of the selected tags (``all``: every requirement) that none of
        ``proven`` covers. A requirement's tags are those of the scenarios proving it, or,
        when no available scenario does (a blocked plugin's, or none written yet), those of
        the scenarios of the file defining it."""
        tags: dict[str, set[str]] = {}
        for s in self.scenarios.values():
            for req in s.requirements:
                tags.setdefault(req, set()).update(s.tags)
        by_file: dict[Path, set[str]] = {}
        for s in self.scenarios.values():
            by_file.setdefault(s.file, set()).update(s.tags)
        for req, r in self.requirements.items():
            if req not in tags:
                tags[req] = set(by_file.get(r.file, set())) if r.file is not None else set()
        selected = set(names)
        proven = set(proven)
        out = {}
        for req, r in sorted(self.requirements.items()):
            hit = sorted(tags[req] & selected) or (["all"] if "all" in selected else [])
            if hit and req not in proven:
                out[req] = {**r.to_json(), "tags": hit}
        return out


def _text(file: Path, where: str, value: object) -> dict[str, str]:
    if isinstance(value, dict) and isinstance(value.get("fr"), str) and isinstance(value.get("en"), str):
        return {"fr": value["fr"], "en": value["en"]}
    raise ScenarioError(M("scenario.expected_text", file=str(file), where=where))


def _strings(file: Path, where: str, value: object, *, required: bool = True) -> tuple[str, ...]:
    if value is None and not required:
        return ()
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    if isinstance(value, list) and not value and not required:
        return ()
    raise ScenarioError(M("scenario.expected_list", file=str(file), where=where))


def _one(file: Path, where: str, value: object, allowed: tuple[str, ...] | None = None) -> str:
    if isinstance(value, str) and value and (allowed is None or value in allowed):
        return value
    choice = f" ({', '.join(allowed)})" if allowed else ""
    raise ScenarioError(M("scenario.invalid_value", file=str(file), where=where, value=repr(value), choice=choice))


_SCENARIO_KEYS = {"id", "title", "requirements", "profiles", "criticality", "proof", "tags", "collect", "checks", "collect_mode"}
COLLECT_MODES = ("all", "any")
_REQUIREMENT_KEYS = {"id", "source", "level", "text", "official_ids"}


def load_file(file: Path) -> tuple[list[Scenario], list[Requirement]]:
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(M("scenario.unreadable", file=str(file), error=str(exc))) from None
    requirements = []
    for i, r in enumerate(data.get("requirement", [])):
        where = f"requirement[{i}]"
        unknown = set(r) - _REQUIREMENT_KEYS
        if unknown:
            raise ScenarioError(M("scenario.unknown_keys", file=str(file), where=where, keys=str(sorted(unknown))))
        requirements.append(
            Requirement(
                id=_one(file, f"{where}.id", r.get("id")),
                source=_one(file, f"{where}.source", r.get("source")),
                level=_one(file, f"{where}.level", r.get("level"), LEVELS),
                text=_text(file, f"{where}.text", r.get("text")),
                official_ids=_strings(file, f"{where}.official_ids", r.get("official_ids"), required=False),
                file=file,
            )
        )
    scenarios = []
    for i, s in enumerate(data.get("scenario", [])):
        where = f"scenario[{i}]"
        unknown = set(s) - _SCENARIO_KEYS
        if unknown:
            raise ScenarioError(M("scenario.unknown_keys", file=str(file), where=where, keys=str(sorted(unknown))))
        scenarios.append(
            Scenario(
                id=_one(file, f"{where}.id", s.get("id")),
                title=_text(file, f"{where}.title", s.get("title")),
                requirements=_strings(file, f"{where}.requirements", s.get("requirements")),
                profiles=_strings(file, f"{where}.profiles", s.get("profiles")),
                criticality=_one(file, f"{where}.criticality", s.get("criticality"), CRITICALITIES),
                proof=_one(file, f"{where}.proof", s.get("proof")),
                tags=_strings(file, f"{where}.tags", s.get("tags"), required=False),
                collect=_strings(file, f"{where}.collect", s.get("collect"), required=False),
                checks=_strings(file, f"{where}.checks", s.get("checks")),
                file=file,
                collect_mode=_one(file, f"{where}.collect_mode", s.get("collect_mode", "all"), COLLECT_MODES),
            )
        )
    return scenarios, requirements


def load_catalogue(dirs: Iterable[Path]) -> Catalogue:
    """All scenarios of the given folders, in folder then file order; ids must be unique."""
    dirs = list(dirs)
    scenarios: dict[str, Scenario] = {}
    requirements: dict[str, Requirement] = {}
    for folder in dirs:
        if not folder.is_dir():
            raise ScenarioError(M("scenario.folder_not_found", folder=str(folder)))
        for file in sorted(folder.glob("*.toml")):
            found, reqs = load_file(file)
            for r in reqs:
                if r.id in requirements and requirements[r.id] != r:
                    raise ScenarioError(M("scenario.requirement_twice", file=str(file), id=r.id))
                requirements[r.id] = r
            for s in found:
                if s.id in scenarios:
                    raise ScenarioError(M("scenario.twice", file=str(file), id=s.id, first=str(scenarios[s.id].file)))
                scenarios[s.id] = s
    if not scenarios:
        shown = ", ".join(map(str, dirs))
        raise ScenarioError(M("scenario.none", dirs=shown))
    for s in scenarios.values():
        for req in s.requirements:
            if req not in requirements:
                raise ScenarioError(M("scenario.undefined_requirement", file=str(s.file), id=s.id, requirement=req))
    return Catalogue(scenarios, requirements)
