"""Files the rules read (value sets), parsed once per process instead of once per document.

Rules read value-set files with ``doc('file.xml')`` or ``document($jdv)`` where ``$jdv`` is
a schema- or pattern-level variable holding the file name. XSLT caches such documents for
one transformation only, and each document checked is a transformation of its own, so
SaxonC would parse every value set again for every document. Each such read becomes a
stylesheet parameter instead, whose default is the original read: the engine supplies the
parsed file when it has it, and without it the rule behaves exactly as written (a file
the kit lacks still fails when a rule reads it).
"""
from __future__ import annotations

import re

from lxml import etree

XSL = "http://www.w3.org/1999/XSL/Transform"
PARAM_PREFIX = "harness-document-"
# attributes of XSLT instructions that hold XPath expressions or patterns
_XPATH_ATTRIBUTES = ("select", "test", "match", "use", "group-by", "group-adjacent")
_LITERAL_READ = re.compile(r"""\b(?:fn:)?(?:doc|document)\(\s*'([^'{}]+)'\s*\)""")
_VARIABLE_READ = re.compile(r"""\b(?:fn:)?(?:doc|document)\(\s*\$([A-Za-z_][\w.\-]*)\s*\)""")
_FILE_NAME = re.compile(r"""^\s*'([^'{}]+\.xml)'\s*$""")


def preload_reads(sheet: etree._Element, global_files: dict[str, str], local_names: set[str]) -> dict[str, str]:
    """Turn file reads in ``sheet`` into parameters; returns {parameter name: file as written}.

    ``global_files`` maps global variables holding a file name to that name; a variable
    some rule also declares locally is left alone, since which one a read sees depends on
    where it is.
    """
    files = {name: value for name, value in global_files.items() if name not in local_names}
    params: dict[str, str] = {}  # read expression (default) -> parameter name
    written: dict[str, str] = {}  # parameter name -> file as written

    def param_for(default: str, file: str) -> str:
        if default not in params:
            params[default] = f"{PARAM_PREFIX}{len(params)}"
            written[params[default]] = file
        return f"${params[default]}"

    def rewrite(expr: str) -> str:
        expr = _LITERAL_READ.sub(lambda m: param_for(f"doc('{m.group(1)}')", m.group(1)), expr)
        return _VARIABLE_READ.sub(
            lambda m: param_for(f"doc(${m.group(1)})", files[m.group(1)]) if m.group(1) in files else m.group(0), expr)

    for el in sheet.iter(f"{{{XSL}}}*"):
        for attr in _XPATH_ATTRIBUTES:
            value = el.get(attr)
            if value and ("doc(" in value or "document(" in value):
                el.set(attr, rewrite(value))
    for default, name in params.items():
        decl = etree.Element(f"{{{XSL}}}param")
        decl.set("name", name)
        decl.set("select", default)
        sheet.insert(1, decl)
    return written


def file_name_of(value: str | None) -> str | None:
    """The file a ``let`` value names (``'../jeuxDeValeurs/X.xml'``), or None."""
    m = _FILE_NAME.match(value or "")
    return m.group(1) if m else None
