"""Every user-facing text: a key and its parameters, rendered from a catalogue.

Each plugin (and the core) ships one catalogue per language as gettext ``.po`` files in its
package, ``<package>/locale/<lang>/LC_MESSAGES/<package>.po``; a message id is a key
(``"sta.missing"``), its translation a Python format string (``{name}``, ``{count:02d}``,
``{value!r}``). Code builds :class:`Message` objects and never writes a sentence inline;
evidence keeps the text rendered in every language (:meth:`Message.texts`), so a
verifier reads it without the harness.

Texts that come back from a record (a bundle, a recorded answer) or from outside (a
library's error) are :class:`Text`: already rendered, they render as they are.
"""
from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Mapping, Protocol, Union, runtime_checkable

from .secrets import scrub

LANGS = ("fr", "en")
DEFAULT_LANG = "fr"


def resolve_lang(lang: str | None = None) -> str:
    """The language to use: explicit value, then HARNESS_LANG, then French."""
    lang = (lang or os.environ.get("HARNESS_LANG") or DEFAULT_LANG).lower()
    return lang if lang in LANGS else DEFAULT_LANG


@runtime_checkable
class Renderable(Protocol):
    def render(self, lang: str | None = None) -> str: ...


class Catalogue:
    """The messages of one package (a plugin or the core), read from its ``.po`` files."""

    def __init__(self, package: str) -> None:
        self.package = package

    def __call__(self, key: str, /, **params: Any) -> "Message":
        return Message(self, key, tuple(sorted(params.items())))

    def templates(self, lang: str) -> Mapping[str, str]:
        return _load(self.package, lang)

    def keys(self, lang: str) -> set[str]:
        return set(self.templates(lang))

    def __repr__(self) -> str:
        return f"Catalogue({self.package!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Catalogue) and other.package == self.package

    def __hash__(self) -> int:
        return hash(self.package)


def catalogue(module: str) -> Catalogue:
    """The catalogue of the package holding ``module`` (pass ``__name__``)."""
    return Catalogue(module.split(".")[0])


def catalogue_path(package: str, lang: str):
    return resources.files(package).joinpath("locale", lang, "LC_MESSAGES", f"{package}.po")


@lru_cache(maxsize=None)
def _load(package: str, lang: str) -> dict[str, str]:
    from babel.messages.pofile import read_po

    path = catalogue_path(package, lang)
    try:
        with path.open("rb") as fh:
            po = read_po(fh, locale=lang, domain=package, abort_invalid=True)
    except (OSError, ValueError) as exc:
        raise LookupError(f"message catalogue unreadable: {path} ({exc})") from None
    return {m.id: m.string for m in po if m.id and isinstance(m.id, str) and m.string}


# what a text from outside (a peer's answer, a file's name, a vendor's page) may not do once
# printed: end a line, move the cursor, colour the terminal, reorder what follows
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """``text`` with its control characters written as escapes (``\\n``, ``\\x1b``,
    ``\\u202e``): every parameter of a message goes through it, so that nothing a peer sent
    forges a line or a colour on the terminal, in a summary or in a report."""
    return _CONTROLS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class _Shown(str):
    """A parameter as shown: its escaped text, and as ``{name!r}`` its own repr (which escapes
    what is not printable already: not escaped twice)."""

    original: str

    def __new__(cls, text: str) -> "_Shown":
        shown = super().__new__(cls, visible(text))
        shown.original = text
        return shown

    def __repr__(self) -> str:
        return repr(self.original)


def _value(value: Any, lang: str) -> Any:
    if isinstance(value, Renderable):
        return value.render(lang)
    if isinstance(value, str):
        return _Shown(value)
    return value


@dataclass(frozen=True)
class Message:
    """A message key with its parameters; parameters may be messages themselves."""

    catalogue: Catalogue
    key: str
    params: tuple[tuple[str, Any], ...] = ()

    def render(self, lang: str | None = None) -> str:
        lang = resolve_lang(lang)
        templates = self.catalogue.templates(lang)
        try:
            template = templates[self.key]
        except KeyError:
            raise LookupError(f"message {self.key!r} missing from the {lang} catalogue of {self.catalogue.package}") from None
        # a parameter may hold what a peer said, a secret echoed in it: every text leaves scrubbed
        return scrub(template.format(**{k: _value(v, lang) for k, v in self.params}))

    def texts(self) -> dict[str, str]:
        return {lang: self.render(lang) for lang in LANGS}

    def param(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)

    def replace(self, **params: Any) -> "Message":
        """The same message with some parameters changed."""
        return Message(self.catalogue, self.key, tuple(sorted({**dict(self.params), **params}.items())))

    def __str__(self) -> str:
        return self.render()


@dataclass(frozen=True)
class Text:
    """A text already rendered in every language (read back from a record, or the same
    in every language, such as a file name or a library's own error)."""

    by_lang: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def of(cls, texts: Mapping[str, str]) -> "Text":
        return cls(tuple(sorted((k, v) for k, v in texts.items() if k in LANGS and isinstance(v, str))))

    @classmethod
    def same(cls, text: str) -> "Text":
        return cls(tuple((lang, text) for lang in LANGS))

    def render(self, lang: str | None = None) -> str:
        found = dict(self.by_lang)
        return scrub(found.get(resolve_lang(lang)) or found.get(DEFAULT_LANG) or next(iter(found.values()), ""))

    def texts(self) -> dict[str, str]:
        return {lang: self.render(lang) for lang in LANGS}

    def __str__(self) -> str:
        return self.render()


@dataclass(frozen=True)
class Joined:
    """Several messages (or plain values) shown as one, in each language."""

    items: tuple[Any, ...]
    separator: str = "; "

    def render(self, lang: str | None = None) -> str:
        return scrub(self.separator.join(str(_value(i, lang or DEFAULT_LANG)) for i in self.items))

    def texts(self) -> dict[str, str]:
        return {lang: self.render(lang) for lang in LANGS}


Localized = Union[Message, Text]


def placeholders(template: str) -> set[str]:
    """The parameter names a template uses (``{name}``, ``{name!r}``, ``{name:02d}``)."""
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}
