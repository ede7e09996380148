"""The target description: the vendor's demo environment, as a TOML file.

Credentials are references only (``env:NAME`` or ``file:PATH``): their values are read
when a plugin asks for them and never enter evidence, logs or reports. Relative paths
resolve against the folder of the target file.
"""
from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import TargetError

# A schema maps a section path ("product", "services.demo-vendor") to its keys and types.
# Types: str, int, bool, url, path, secret, list[str], list[path]; a trailing "!" = required.
Schema = Mapping[str, Mapping[str, str]]

CORE_SCHEMA: dict[str, dict[str, str]] = {
    "product": {"id": "str!", "name": "str!", "version": "str!", "vendor": "str"},
    "endpoints": {"*": "url"},
    "exports": {"*": "path"},
    "credentials": {"*": "secret"},
    "history": {"bundles": "list[path]"},
    # the terminology every plugin uses (harness.terminology.service documents each key)
    "terminology": {"server": "url", "token_url": "url", "client_id": "str", "snapshot": "list[path]", "builtin_snapshot": "bool",
                    "fallback": "bool", "timeout": "int", "retries": "int", "cache_dir": "path", "cache_hours": "int"},
}
REQUIRED_SECTIONS = ("product",)
SERVICE_URL_SCHEME = "service://"

_TYPE_NAMES = {
    "str": ("une chaîne", "a string"),
    "int": ("un entier", "an integer"),
    "bool": ("un booléen", "a boolean"),
    "url": ("une URL http(s):// ou service://NOM/", "an http(s):// or service://NAME/ URL"),
    "path": ("un chemin (chaîne)", "a path (string)"),
    "secret": ("une référence env:NOM ou file:CHEMIN", "an env:NAME or file:PATH reference"),
    "list[str]": ("une liste de chaînes", "a list of strings"),
    "list[path]": ("une liste de chemins", "a list of paths"),
}


def _expected(file: str, key: str, typ: str, got: object) -> TargetError:
    fr, en = _TYPE_NAMES[typ]
    kind = type(got).__name__
    return TargetError(file, key, f"attendu : {fr} (trouvé : {kind} {got!r})", f"expected {en} (found {kind} {got!r})")


def _is_ref(value: object) -> bool:
    return isinstance(value, str) and (value.startswith("env:") or value.startswith("file:")) and len(value) > 5


@dataclass
class Target:
    """A validated target. ``data`` holds the file's content with paths made absolute."""

    path: Path | None
    data: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def product(self) -> dict[str, Any]:
        return self.data["product"]

    @property
    def endpoints(self) -> dict[str, str]:
        return self.data.get("endpoints", {})

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        return self.data.get("services", {})

    @property
    def exports(self) -> dict[str, Path]:
        return {k: Path(v) for k, v in self.data.get("exports", {}).items()}

    @property
    def history_dirs(self) -> list[Path]:
        return [Path(p) for p in self.data.get("history", {}).get("bundles", [])]

    @property
    def folder(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def secret(self, name: str) -> str | None:
        """The value a credential reference points at; None when it is not set."""
        ref = self.data.get("credentials", {}).get(name)
        if ref is None:
            return None
        return resolve_secret(ref, self.folder)

    def secret_values(self) -> list[str]:
        """Every credential value that resolves, so recorders can scrub them."""
        values = []
        for ref in self.data.get("credentials", {}).values():
            try:
                value = resolve_secret(ref, self.folder)
            except TargetError:
                continue
            if value and len(value) >= 4:
                values.append(value)
        return values

    def sanitized(self) -> dict[str, Any]:
        """The target as written, safe for evidence: credentials are references only,
        paths are as the user wrote them (relative to the target file)."""
        return copy.deepcopy(self.raw)

    def override(self, assignment: str, schema: Schema) -> None:
        """Apply one ``SECTION.KEY=VALUE`` from the command line (``--set``), in data and evidence.

        The value is checked against the key's declared type like a value of the file;
        a relative path resolves against the current folder, where the user typed it.
        """
        name, sep, text = assignment.partition("=")
        section, dot, key = name.strip().rpartition(".")
        if not sep or not dot or not section or not key:
            raise TargetError("--set", assignment, "attendu : SECTION.CLÉ=VALEUR", "expected SECTION.KEY=VALUE")
        spec = schema.get(section)
        if spec is None:
            known = ", ".join(sorted(schema))
            raise TargetError("--set", name, f"section inconnue (sections connues : {known})", f"unknown section (known sections: {known})")
        typ = spec.get(key, spec.get("*"))
        if typ is None:
            allowed = ", ".join(sorted(k for k in spec if k != "*"))
            raise TargetError("--set", name, f"clé inconnue (clés permises : {allowed})", f"unknown key (allowed keys: {allowed})")
        typ = typ.rstrip("!")
        value: Any = text
        if typ == "int":
            try:
                value = int(text)
            except ValueError:
                raise _expected("--set", name, typ, text) from None
        elif typ == "bool":
            if text.lower() not in ("true", "false"):
                raise _expected("--set", name, typ, text)
            value = text.lower() == "true"
        elif typ.startswith("list["):
            raise TargetError("--set", name, "une liste s'écrit dans le fichier cible", "a list is written in the target file")
        checked = _check_value("--set", name, typ, value, Path.cwd())
        table, raw = self.data, self.raw
        for part in section.split("."):
            table, raw = table.setdefault(part, {}), raw.setdefault(part, {})
        table[key] = checked
        raw[key] = checked if typ == "path" else value

    def set_service_option(self, service: str, key: str, value: Any) -> None:
        """Override one service option (command-line switches), in data and evidence alike."""
        self.data.setdefault("services", {}).setdefault(service, {})[key] = value
        self.raw.setdefault("services", {}).setdefault(service, {})[key] = value


def resolve_secret(ref: str, folder: Path) -> str | None:
    if ref.startswith("env:"):
        return os.environ.get(ref[4:])
    if ref.startswith("file:"):
        p = Path(ref[5:])
        p = p if p.is_absolute() else folder / p
        try:
            return p.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise TargetError(str(folder), ref, f"fichier de secret illisible : {exc}", f"unreadable secret file: {exc}") from None
    raise TargetError(str(folder), ref, "référence de secret invalide", "invalid secret reference")


def _check_value(file: str, key: str, typ: str, value: Any, folder: Path) -> Any:
    if typ == "str":
        if not isinstance(value, str):
            raise _expected(file, key, typ, value)
        return value
    if typ == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise _expected(file, key, typ, value)
        return value
    if typ == "bool":
        if not isinstance(value, bool):
            raise _expected(file, key, typ, value)
        return value
    if typ == "url":
        if not isinstance(value, str) or not value.startswith(("http://", "https://", SERVICE_URL_SCHEME)):
            raise _expected(file, key, typ, value)
        return value
    if typ == "path":
        if not isinstance(value, str) or not value:
            raise _expected(file, key, typ, value)
        p = Path(value).expanduser()
        return str(p if p.is_absolute() else (folder / p).resolve())
    if typ == "secret":
        if not _is_ref(value):
            raise TargetError(
                file, key,
                "les secrets ne s'écrivent pas en clair : utiliser env:NOM ou file:CHEMIN",
                "secrets must not be written inline: use env:NAME or file:PATH",
            )
        return value
    if typ in ("list[str]", "list[path]"):
        if not isinstance(value, list):
            raise _expected(file, key, typ, value)
        inner = typ[5:-1]
        return [_check_value(file, f"{key}[{i}]", inner, v, folder) for i, v in enumerate(value)]
    raise ValueError(f"unknown schema type {typ!r}")


def _check_section(file: str, name: str, table: Any, spec: Mapping[str, str], folder: Path) -> dict:
    if not isinstance(table, dict):
        raise TargetError(file, name, f"attendu : une table [{name}]", f"expected a table [{name}]")
    out = {}
    for key, value in table.items():
        typ = spec.get(key, spec.get("*"))
        if typ is None:
            allowed = ", ".join(sorted(k for k in spec if k != "*"))
            raise TargetError(file, f"{name}.{key}", f"clé inconnue (clés permises : {allowed})", f"unknown key (allowed keys: {allowed})")
        out[key] = _check_value(file, f"{name}.{key}", typ.rstrip("!"), value, folder)
    for key, typ in spec.items():
        if typ.endswith("!") and key not in table:
            raise TargetError(file, f"{name}.{key}", "clé obligatoire absente", "required key missing")
    return out


def load_target(path: str | Path, schema: Schema) -> Target:
    """Read and validate a target file against the merged schema of core and plugins."""
    path = Path(path)
    file = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TargetError(file, "-", "fichier introuvable", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(file, "-", f"fichier illisible : {exc}", f"unreadable file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(file, "-", f"TOML invalide : {exc}", f"invalid TOML: {exc}") from None
    folder = path.resolve().parent
    data: dict[str, Any] = {}
    for section in REQUIRED_SECTIONS:
        if section not in raw:
            raise TargetError(file, section, "section obligatoire absente", "required section missing")
    for name, table in raw.items():
        if name == "services":
            if not isinstance(table, dict):
                raise TargetError(file, name, "attendu : une table [services.NOM]", "expected [services.NAME] tables")
            data["services"] = {}
            for svc, options in table.items():
                spec = schema.get(f"services.{svc}")
                if spec is None:
                    known = ", ".join(sorted(k[9:] for k in schema if k.startswith("services.")))
                    raise TargetError(file, f"services.{svc}", f"service inconnu (services connus : {known})", f"unknown service (known services: {known})")
                data["services"][svc] = _check_section(file, f"services.{svc}", options, spec, folder)
            continue
        spec = schema.get(name)
        if spec is None:
            known = ", ".join(sorted({k.split(".")[0] for k in schema}))
            raise TargetError(file, name, f"section inconnue (sections connues : {known})", f"unknown section (known sections: {known})")
        data[name] = _check_section(file, name, table, spec, folder)
    for key, url in data.get("endpoints", {}).items():
        if url.startswith(SERVICE_URL_SCHEME):
            svc = url[len(SERVICE_URL_SCHEME):].split("/", 1)[0]
            if svc not in data.get("services", {}):
                raise TargetError(file, f"endpoints.{key}", f"le service {svc!r} n'est pas déclaré dans [services]", f"service {svc!r} is not declared under [services]")
    return Target(path=path.resolve(), data=data, raw=raw)
