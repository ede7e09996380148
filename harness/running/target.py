"""The target description: the vendor's demo environment, as a TOML file.

Credentials are references only (``env:NAME`` or ``file:PATH``): their values are read
when a plugin asks for them and never enter evidence, logs or reports. Relative paths
resolve against the folder of the target file.

Collectors and checks see the same :class:`Target` type: collectors the live one (paths
resolved, secrets readable), checks the one the bundle records (:meth:`Target.recorded`:
paths as written, no secret), so that a check reads the same values live and in replay.
"""
from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

from ..errors import PluginError, TargetError
from ..markers import blocked_plugins
from ..messages import Message, catalogue

M = catalogue(__name__)

# A schema maps a section path ("product", "services.demo-vendor") to its keys and types.
# Types: str, int, bool, url, path, secret, list[str], list[path]; a trailing "!" = required.
Schema = Mapping[str, Mapping[str, str]]

CORE_SCHEMA: dict[str, dict[str, str]] = {
    "product": {"id": "str!", "name": "str!", "version": "str!", "vendor": "str"},
    # the build of each component, for the equivalence of proofs (named like a scenario tag)
    "product.components": {"*": "str"},
    "endpoints": {"*": "url"},
    "exports": {"*": "path"},
    "credentials": {"*": "secret"},
    "history": {"bundles": "list[path]"},
    # the terminology every plugin uses (harness.terminology.service documents each key)
    "terminology": {"server": "url", "token_url": "url", "client_id": "str", "snapshot": "list[path]", "builtin_snapshot": "bool",
                    "fallback": "bool", "timeout": "int", "retries": "int", "cache_dir": "path", "cache_hours": "int",
                    "deadline": "int"},
    # every exchange with the software: total deadline and per-read timeout, in seconds
    "network": {"deadline": "int", "read_timeout": "int"},
    # the CDA documents the software exported: several plugins read them (the CDA kit, the
    # INS and terminology rules), so the core declares them and blocking one plugin leaves
    # the others' targets valid
    "cda": {"documents": "path"},
    # who seals the bundle: the vendor's key (PKCS#12, or PEM with its certificate), the
    # passphrase by reference only (env:, file:), an RFC 3161 timestamp authority
    "signature": {"key": "path", "certificate": "path", "passphrase": "secret", "timestamp_url": "url"},
}
REQUIRED_SECTIONS = ("product",)
SERVICE_URL_SCHEME = "service://"
TYPES = ("str", "int", "bool", "url", "path", "secret", "list[str]", "list[path]")
SECRET_DIRS_ENV = "HARNESS_SECRET_DIRS"  # folders besides the target's own where file: secrets may live
MAX_SECRET_FILE = 64 * 1024
MAX_DEPTH = 16  # tables and arrays nested deeper are not a target description
# key names that say "this is a credential": such a key must be a reference (type secret)
_SECRET_NAMES = {"password", "passwd", "pwd", "passphrase", "secret", "token", "apikey", "api_key", "access_token",
                 "client_secret", "private_key", "auth", "authorization", "credentials"}
_SECRET_SUFFIXES = ("_password", "_passwd", "_passphrase", "_secret", "_token", "_apikey", "_api_key", "_private_key")


def looks_secret(name: str) -> bool:
    """Whether a key or URL parameter name says it holds a credential (``token_url`` does not)."""
    lowered = name.lower().replace("-", "_")
    return lowered in _SECRET_NAMES or lowered.endswith(_SECRET_SUFFIXES)


def _type_name(typ: str) -> Message:
    return {
        "str": M("type.str"), "int": M("type.int"), "bool": M("type.bool"), "url": M("type.url"), "path": M("type.path"),
        "secret": M("type.secret"), "list[str]": M("type.list_str"), "list[path]": M("type.list_path"),
    }[typ]


def _expected(file: str, key: str, typ: str, got: object) -> TargetError:
    return TargetError(file, key, M("target.expected", type=_type_name(typ), kind=type(got).__name__, value=repr(got)))


def _is_ref(value: object) -> bool:
    return isinstance(value, str) and (value.startswith("env:") or value.startswith("file:")) and len(value) > 5


def merge_schemas(contributions: Iterable[tuple[str, Schema]]) -> dict[str, dict[str, str]]:
    """One schema from every plugin's; a key (or a whole ``*`` section) declared by two
    plugins is an error naming both."""
    schema: dict[str, dict[str, str]] = {}
    owner: dict[tuple[str, str], str] = {}
    for plugin, part in contributions:
        for section, keys in part.items():
            for key, typ in keys.items():
                if typ.rstrip("!") not in TYPES:
                    raise PluginError(M("schema.bad_type", plugin=plugin, section=section, key=key, type=typ, types=", ".join(TYPES)))
                if looks_secret(key) and typ.rstrip("!") != "secret":
                    raise PluginError(M("schema.secret_type", plugin=plugin, section=section, key=key, type=typ))
                clash = owner.get((section, key)) or (owner.get((section, "*")) if key != "*" else
                                                       next((o for (s, _), o in owner.items() if s == section), None))
                if clash is not None:
                    first, second = sorted((clash, plugin))
                    raise PluginError(M("schema.twice", section=section, key=key, first=first, second=second))
                owner[(section, key)] = plugin
                schema.setdefault(section, {})[key] = typ
    return schema


@dataclass
class Target:
    """A validated target: ``data`` holds the values (paths as :class:`~pathlib.Path`,
    resolved against the target's folder), ``raw`` what the file says (the record)."""

    path: Path | None
    data: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    schema: Schema = field(repr=False, default_factory=dict)
    live: bool = True

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
        return dict(self.data.get("exports", {}))

    @property
    def history_dirs(self) -> list[Path]:
        return list(self.data.get("history", {}).get("bundles", []))

    @property
    def folder(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def section(self, name: str) -> dict[str, Any]:
        """The values of section ``name`` (empty when the target has none)."""
        return dict(self.data.get(name, {}))

    def resolve_secret(self, ref: str) -> str | None:
        """The value a credential reference (``env:NAME``, ``file:PATH``) points at."""
        if not self.live:
            raise TargetError(self.path.name if self.path else "-", ref, M("secret.recorded"))
        return resolve_secret(ref, self.folder)

    def secret(self, name: str) -> str | None:
        """The value of ``[credentials] name``; None when it is not set."""
        ref = self.data.get("credentials", {}).get(name)
        return None if ref is None else self.resolve_secret(ref)

    def secret_refs(self) -> list[str]:
        """Every credential reference of the target, in any section (the keys of type secret)."""
        refs = []
        for section, table in self.data.items():
            tables = {f"services.{svc}": opts for svc, opts in table.items()} if section == "services" else {section: table}
            for name, values in tables.items():
                spec = self.schema.get(name, {})
                refs += [v for k, v in values.items() if spec.get(k, spec.get("*", "")).rstrip("!") == "secret" and _is_ref(v)]
        return refs

    def secret_values(self) -> list[str]:
        """Every credential value that resolves, so recorders can scrub them."""
        values = []
        for ref in self.secret_refs():
            try:
                value = resolve_secret(ref, self.folder)
            except TargetError:
                continue
            if value and len(value) >= 4 and value not in values:
                values.append(value)
        return values

    def sanitized(self) -> dict[str, Any]:
        """The target as written, safe for evidence: credentials are references only,
        paths are as the user wrote them (relative to the target file)."""
        return copy.deepcopy(self.raw)

    def recorded(self) -> "Target":
        """The target as the bundle records it, as checks see it (no secret can be read)."""
        return Target.from_record(self.sanitized(), self.schema, self.path)

    @classmethod
    def from_record(cls, record: Mapping[str, Any], schema: Schema, path: Path | None = None) -> "Target":
        """A target read back from a bundle: values as recorded, path keys as paths."""
        data: dict[str, Any] = {}
        for name, table in record.items():
            if not isinstance(table, dict):
                continue
            if name == "services":
                data[name] = {svc: dict(opts) for svc, opts in table.items() if isinstance(opts, dict)}
                continue
            spec = schema.get(name, {})
            data[name] = {k: _as_recorded(spec.get(k, spec.get("*", "")).rstrip("!"), v) for k, v in table.items()}
        return cls(path, data, copy.deepcopy(dict(record)), schema, live=False)

    def override(self, assignment: str) -> None:
        """Apply one ``SECTION.KEY=VALUE`` from the command line (``--set``), in data and evidence.

        The value is checked against the key's declared type like a value of the file (a list
        is written comma-separated: ``psc.attacks=expired,wrong-issuer``);
        a relative path resolves against the current folder, where the user typed it.
        """
        name, sep, text = assignment.partition("=")
        section, dot, key = name.strip().rpartition(".")
        if not sep or not dot or not section or not key:
            raise TargetError("--set", assignment, M("set.syntax"))
        typ = _key_type("--set", self.schema, section, key, name)
        if looks_secret(key) and typ != "secret":  # as the file refuses it: a credential is a reference
            raise TargetError("--set", name, M("secret.name", type=typ))
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
        elif typ.startswith("list["):  # comma-separated on the command line (none: an empty list)
            value = [item.strip() for item in text.split(",") if item.strip()]
        # a path typed on the command line is the user's, from where they typed it; a secret
        # reference is read from the target's folder, so it is confined there
        checked = _check_value("--set", name, typ, value, self.folder if typ == "secret" else Path.cwd())
        table, raw = self.data, self.raw
        for part in section.split("."):
            table, raw = table.setdefault(part, {}), raw.setdefault(part, {})
        table[key] = checked
        raw[key] = str(checked) if typ == "path" else value

    def set_service_option(self, service: str, key: str, value: Any) -> None:
        """Override one service option (command-line switches), in data and evidence alike."""
        self.data.setdefault("services", {}).setdefault(service, {})[key] = value
        self.raw.setdefault("services", {}).setdefault(service, {})[key] = value


def _as_recorded(typ: str, value: Any) -> Any:
    if typ == "path" and isinstance(value, str):
        return Path(value)
    if typ == "list[path]" and isinstance(value, list):
        return [Path(v) if isinstance(v, str) else v for v in value]
    return value


def _key_type(file: str, schema: Schema, section: str, key: str, where: str) -> str:
    spec = schema.get(section)
    if spec is None:
        raise TargetError(file, where, M("target.unknown_section", known=", ".join(sorted(schema)), blocked=_blocked_hint()))
    typ = spec.get(key, spec.get("*"))
    if typ is None:
        raise TargetError(file, where, M("target.unknown_key", allowed=", ".join(sorted(k for k in spec if k != "*")), blocked=_blocked_hint()))
    return typ.rstrip("!")


def _blocked_hint() -> Message | str:
    """Names the blocked plugins in an "unknown section/key" error: the key may be theirs."""
    blocked = blocked_plugins()
    return M("target.blocked_hint", plugins=", ".join(blocked)) if blocked else ""


def _secret_dirs(folder: Path) -> list[Path]:
    extra = [Path(d).expanduser() for d in os.environ.get(SECRET_DIRS_ENV, "").split(os.pathsep) if d.strip()]
    return [d.resolve() for d in [folder, *extra]]


def secret_file(ref: str, folder: Path, *, file: str | None = None, key: str | None = None) -> Path:
    """The file a ``file:`` reference names, once it is known to be a regular file inside
    the target's folder or a folder of ``HARNESS_SECRET_DIRS`` (links resolved first): a
    target must not make the harness read, and maybe quote, any file of the machine."""
    where = (file or str(folder), key or ref)
    path = Path(ref[5:]).expanduser()
    real = (path if path.is_absolute() else folder / path).resolve()
    allowed = _secret_dirs(folder)
    if not any(real.is_relative_to(d) for d in allowed):
        raise TargetError(*where, M("secret.outside", folders=", ".join(map(str, allowed)), variable=SECRET_DIRS_ENV))
    if real.exists() and not real.is_file():
        raise TargetError(*where, M("secret.not_a_file"))
    return real


def resolve_secret(ref: str, folder: Path) -> str | None:
    if ref.startswith("env:"):
        return os.environ.get(ref[4:])
    if ref.startswith("file:"):
        path = secret_file(ref, folder)
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_SECRET_FILE + 1)
        except OSError as exc:
            raise TargetError(str(folder), ref, M("secret.unreadable", error=exc.strerror or type(exc).__name__)) from None
        if len(data) > MAX_SECRET_FILE:
            raise TargetError(str(folder), ref, M("secret.too_large", limit=MAX_SECRET_FILE))
        return data.decode("utf-8", "replace").strip()
    raise TargetError(str(folder), ref, M("secret.invalid"))


def _check_scalar(file: str, key: str, typ: str, value: Any, folder: Path) -> Any:
    if typ == "str" and isinstance(value, str):
        return value
    if typ == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if typ == "bool" and isinstance(value, bool):
        return value
    if typ == "url" and isinstance(value, str) and value.startswith(("http://", "https://", SERVICE_URL_SCHEME)):
        _no_credentials_in(file, key, value)
        return value
    if typ == "path" and isinstance(value, str) and value:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (folder / p).resolve()
    raise _expected(file, key, typ, value)


def _no_credentials_in(file: str, key: str, url: str) -> None:
    """A URL never carries a credential: ``user:password@`` or ``?access_token=`` would reach
    the evidence, the terminal and the server logs. (Nothing of the URL is repeated.)"""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise TargetError(file, key, M("secret.in_url_userinfo"))
    names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
    if any(looks_secret(name) or name.lower() in ("key", "sig", "signature") for name in names):
        raise TargetError(file, key, M("secret.in_url_query", names=", ".join(n for n in names if looks_secret(n) or n.lower() in ("key", "sig", "signature"))))


def _check_value(file: str, key: str, typ: str, value: Any, folder: Path) -> Any:
    if typ == "secret":
        if not _is_ref(value):
            raise TargetError(file, key, M("secret.inline"))
        if value.startswith("file:"):
            secret_file(value, folder, file=file, key=key)  # where it points is checked now, read later
        return value
    if typ in ("list[str]", "list[path]"):
        if not isinstance(value, list):
            raise _expected(file, key, typ, value)
        inner = typ[5:-1]
        return [_check_value(file, f"{key}[{i}]", inner, v, folder) for i, v in enumerate(value)]
    return _check_scalar(file, key, typ, value, folder)


def _check_section(file: str, name: str, table: Any, schema: Schema, folder: Path) -> dict:
    if not isinstance(table, dict):
        raise TargetError(file, name, M("target.not_a_table", name=name))
    spec = schema[name]
    out = {}
    for key, value in table.items():
        typ = _key_type(file, schema, name, key, f"{name}.{key}")
        if looks_secret(key) and typ != "secret":
            raise TargetError(file, f"{name}.{key}", M("secret.name", type=typ))
        out[key] = _check_value(file, f"{name}.{key}", typ, value, folder)
    for key, typ in spec.items():
        if typ.endswith("!") and key not in table:
            raise TargetError(file, f"{name}.{key}", M("target.required_key"))
    return out


MAX_TARGET_FILE = 1024 * 1024


def _depth(value: Any) -> int:
    """How deeply tables and arrays nest (counted without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _read_toml(path: Path) -> dict[str, Any]:
    file = str(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_TARGET_FILE + 1)
    except FileNotFoundError:
        raise TargetError(file, "-", M("target.not_found")) from None
    except OSError as exc:
        raise TargetError(file, "-", M("target.unreadable", error=exc.strerror or type(exc).__name__)) from None
    if len(data) > MAX_TARGET_FILE:
        raise TargetError(file, "-", M("target.too_large", limit=MAX_TARGET_FILE))
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise TargetError(file, "-", M("target.unreadable", error=str(exc))) from None
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(file, "-", M("target.invalid_toml", error=str(exc))) from None
    except RecursionError:
        raise TargetError(file, "-", M("target.too_deep", limit=MAX_DEPTH)) from None
    if _depth(raw) > MAX_DEPTH:
        raise TargetError(file, "-", M("target.too_deep", limit=MAX_DEPTH))
    return raw


def _check_services(file: str, table: Any, schema: Schema, folder: Path) -> dict:
    if not isinstance(table, dict):
        raise TargetError(file, "services", M("target.services_not_tables"))
    services = {}
    for svc, options in table.items():
        if f"services.{svc}" not in schema:
            known = ", ".join(sorted(k[9:] for k in schema if k.startswith("services.")))
            raise TargetError(file, f"services.{svc}", M("target.unknown_service", known=known))
        services[svc] = _check_section(file, f"services.{svc}", options, schema, folder)
    return services


def load_target(path: str | Path, schema: Schema) -> Target:
    """Read and validate a target file against the merged schema of core and plugins."""
    path = Path(path)
    file = str(path)
    raw = _read_toml(path)
    folder = path.resolve().parent
    data: dict[str, Any] = {}
    for section in REQUIRED_SECTIONS:
        if section not in raw:
            raise TargetError(file, section, M("target.required_section"))
    for name, table in raw.items():
        if name == "services":
            data["services"] = _check_services(file, table, schema, folder)
        elif name not in schema:
            known = ", ".join(sorted({k.split(".")[0] for k in schema}))
            raise TargetError(file, name, M("target.unknown_section", known=known, blocked=_blocked_hint()))
        else:
            data[name] = _check_section(file, name, table, schema, folder)
    for key, url in data.get("endpoints", {}).items():
        if url.startswith(SERVICE_URL_SCHEME):
            svc = url[len(SERVICE_URL_SCHEME):].split("/", 1)[0]
            if svc not in data.get("services", {}):
                raise TargetError(file, f"endpoints.{key}", M("target.undeclared_service", service=svc))
    return Target(path=path.resolve(), data=data, raw=raw, schema=schema)
