"""Which volet schematron(s) apply to a document: found from the kit's own rules.

Each volet schematron asserts, on ``cda:ClinicalDocument``, the document type code and the
templateIds that identify its documents. Those identity assertions are read from the kit
(never from a table of ours) and evaluated on the document:

* the volets whose code assertions hold and whose templateId assertions all hold are
  chosen ("templateId" basis);
* failing that, the volets whose code assertions hold are chosen ("code" basis): the
  document says it is of that type but lacks the volet's templateIds, which those volets
  will report, exactly as when the official kit is run with them;
* otherwise no volet applies, and the check says so.

A level-1 document (``nonXMLBody``) is held to the level-1 model (see :mod:`.level1`): the
CI-SIS has its templateId 1.3.6.1.4.1.19376.1.2.20 *replace* the volet's, so a structured
volet applies to it only when the document claims it by its templateIds; its type code
alone never brings one ("level1" basis when none is claimed).

A version of a chosen volet that the kit ships broken is listed as well: the check
reports it could not run, and the other versions decide.

Volets of one family (``CSE-CS24_2022.01``, ``_2024.01``, ``_2025.01``) are all run; a
document conforms when it satisfies at least one version.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from .schematron import S, SchematronError, instantiate_abstract_patterns, load

_TID = re.compile(r"^\(?\s*(\./)?cda:templateId\[")
_CODE = re.compile(r"^\(?\s*(\./)?cda:code\[")
_VERSION = re.compile(r"^(?P<family>.+?)_(?P<version>(\d+\.\d+_)?\d{4}\.\d{2})$")


def family_and_version(stem: str) -> tuple[str, str]:
    name = stem.removeprefix("CI-SIS_")
    m = _VERSION.match(name)
    return (m.group("family"), m.group("version")) if m else (name, "")


@dataclass
class Identity:
    volet: str  # schematron path relative to the kit
    family: str
    version: str
    templates: list[str]
    codes: list[str]
    namespaces: dict[str, str]
    error: dict | None = None

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def identity_of(path, rel: str) -> Identity:
    family, version = family_and_version(path.stem)
    try:
        loaded = load(path)
        instantiate_abstract_patterns(loaded.root)
    except SchematronError as exc:
        return Identity(rel, family, version, [], [], {}, exc.messages)
    templates, codes = [], []
    for rule in loaded.root.iter(f"{S}rule"):
        if (rule.get("context") or "").strip().lstrip("/") != "cda:ClinicalDocument":
            continue
        for a in rule.iter(f"{S}assert"):
            test = " ".join((a.get("test") or "").split())
            if _TID.match(test):
                templates.append(test)
            elif _CODE.match(test):
                codes.append(test)
    ns = {n.get("prefix"): n.get("uri") for n in loaded.root.findall(f"{S}ns") if n.get("prefix")}
    return Identity(rel, family, version, templates, codes, ns)


def _holds(root: etree._Element, test: str, ns: dict[str, str]) -> bool | None:
    try:
        return bool(root.xpath(test, namespaces=ns))
    except etree.XPathError:
        return None  # not expressible in XPath 1.0: this assertion does not identify


def select(root: etree._Element, identities: list[Identity]) -> dict:
    """{"basis": "templateId" | "code" | "level1" | None, "volets": [...], "level1": bool}
    for one ClinicalDocument."""
    from .level1 import is_level1

    level1 = is_level1(root)
    by_template, by_code = [], []
    for ident in identities:
        codes = [_holds(root, t, ident.namespaces) for t in ident.codes]
        templates = [_holds(root, t, ident.namespaces) for t in ident.templates]
        if not ident.codes and not ident.templates:
            continue
        code_ok = all(c is not False for c in codes) and any(c for c in codes) if ident.codes else None
        tpl_ok = all(t is not False for t in templates) and any(t for t in templates) if ident.templates else None
        if code_ok is False or (code_ok is None and not tpl_ok):
            continue
        if tpl_ok is not False:
            by_template.append(ident.volet)
        elif code_ok:
            by_code.append(ident.volet)
    if level1:
        by_code = []  # the level-1 templateId replaces the volet's: a type code claims nothing
    chosen, basis = (by_template, "templateId") if by_template else (by_code, "code") if by_code else ([], "level1" if level1 else None)
    # A version of a chosen volet whose rules cannot even be read (the kit's BIO-CR-BIO
    # 2023.01 includes empty files) is listed too, so the check reports that it could not run.
    families = {i.family for i in identities if i.volet in chosen}
    chosen += [i.volet for i in identities if i.error and i.family in families]
    return {"basis": basis, "volets": sorted(set(chosen)), "level1": level1}
