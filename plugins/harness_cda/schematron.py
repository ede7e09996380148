"""An ISO Schematron (queryBinding xslt2) to XSLT 3.0 compiler.

Steps, as in ISO/IEC 19757-3: resolve ``include`` (with a letter-case fallback for kits
written on Windows), instantiate abstract patterns (``is-a`` + ``param``), expand abstract
rules (``extends``), select the phase, then generate one XSLT mode per pattern in which
each rule is a template whose priority follows document order: within a pattern only the
first rule matching a node fires, as the standard requires. The output is SVRL.
"""
from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from harness import HarnessError, Localized, UnsafeInput, catalogue, parse_xml

from .documents import file_name_of, preload_reads
from .selection import KEYS, select_contexts

SCH = "http://purl.oclc.org/dsdl/schematron"
XSL = "http://www.w3.org/1999/XSL/Transform"
SVRL = "http://purl.oclc.org/dsdl/svrl"
S = f"{{{SCH}}}"
M = catalogue(__name__)


class SchematronError(HarnessError):
    """A schematron that cannot be compiled (missing include, unknown abstract pattern...)."""


@dataclass
class Quirk:
    """Something in the kit that is not as published standards want it, and how we coped."""

    kind: str
    file: str
    detail: Localized


@dataclass
class Loaded:
    root: etree._Element
    files: list[Path] = field(default_factory=list)
    quirks: list[Quirk] = field(default_factory=list)


def resolve_case_insensitive(base: Path, href: str) -> Path | None:
    """The file ``href`` names relative to ``base``, matching each part regardless of case."""
    current = base
    for part in Path(href).parts:
        if part in ("", "."):
            continue
        if part == "..":
            current = current.parent
            continue
        exact = current / part
        if exact.exists():
            current = exact
            continue
        if not current.is_dir():
            return None
        matches = [p for p in current.iterdir() if p.name.lower() == part.lower()]
        if len(matches) != 1:
            return None
        current = matches[0]
    return current if current.is_file() else None


def load(path: Path) -> Loaded:
    """Parse a schematron and resolve every ``include`` recursively."""
    path = Path(path).resolve()
    result = Loaded(root=_parse(path), files=[path])
    _expand_includes(result.root, path, result, stack=[path])
    return result


def _parse(path: Path) -> etree._Element:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SchematronError(M("sch.unreadable", path=str(path), error=str(exc))) from None
    if not data.strip():
        raise SchematronError(M("sch.empty", path=str(path)))
    try:
        return parse_xml(data, source=str(path)).getroot()
    except UnsafeInput as exc:
        raise SchematronError(exc.detail) from None


def _expand_includes(root: etree._Element, file: Path, result: Loaded, stack: list[Path]) -> None:
    for inc in list(root.iter(f"{S}include")):
        href = inc.get("href", "")
        target = (file.parent / href).resolve()
        if not target.is_file():
            found = resolve_case_insensitive(file.parent, href)
            if found is None:
                raise SchematronError(M("sch.include_folder" if target.is_dir() else "sch.include_missing", file=str(file), href=href))
            result.quirks.append(Quirk("include-case", str(file), M("quirk.include_case", href=href, found=os.path.relpath(found, file.parent))))
            target = found.resolve()
        if target in stack:
            raise SchematronError(M("sch.circular_include", file=str(file), href=href))
        included = _parse(target)
        result.files.append(target)
        _expand_includes(included, target, result, stack + [target])
        parent = inc.getparent()
        included.tail = inc.tail
        parent.replace(inc, included)


# -- abstract patterns and rules ------------------------------------------------------


def _substitute(text: str, params: dict[str, str]) -> str:
    """Replace ``$name`` by the parameter value, longest names first, whole names only."""
    for name in sorted(params, key=len, reverse=True):
        text = re.sub(r"\$" + re.escape(name) + r"(?![\w.\-])", lambda m, v=params[name]: v, text)
    return text


def instantiate_abstract_patterns(schema: etree._Element) -> None:
    abstract = {p.get("id"): p for p in schema.iter(f"{S}pattern") if p.get("abstract") == "true"}
    for inst in list(schema.iter(f"{S}pattern")):
        base_id = inst.get("is-a")
        if not base_id:
            continue
        base = abstract.get(base_id)
        if base is None:
            raise SchematronError(M("sch.unknown_abstract_pattern", id=base_id))
        params = {p.get("name"): p.get("value", "") for p in inst.findall(f"{S}param")}
        new = etree.Element(f"{S}pattern", nsmap=base.nsmap)
        for k, v in inst.attrib.items():
            if k != "is-a":
                new.set(k, v)
        for child in base:
            if child.tag == f"{S}param":
                continue
            clone = copy.deepcopy(child)
            for el in clone.iter():
                if not isinstance(el.tag, str):
                    continue
                for k, v in el.attrib.items():
                    if "$" in v:
                        el.set(k, _substitute(v, params))
            new.append(clone)
        new.tail = inst.tail
        inst.getparent().replace(inst, new)
    for p in abstract.values():
        p.getparent().remove(p)


_STRING = re.compile(r"'[^']*'|\"[^\"]*\"")
_BOUND = re.compile(r"\b(?:for|some|every|let)\s+\$([A-Za-z_][\w.\-]*)")
_VAR = re.compile(r"\$([A-Za-z_][\w.\-]*)")


def _free_variables(expressions: list[str]) -> set[str]:
    """Variables an XPath expression uses without binding them itself (string literals ignored)."""
    free: set[str] = set()
    for expr in expressions:
        bare = _STRING.sub("''", expr)
        bound = set(_BOUND.findall(bare))
        free |= set(_VAR.findall(bare)) - bound
    return free


def collect_abstract_rules(schema: etree._Element) -> dict[str, etree._Element]:
    """Abstract rules by id, removed from the tree; the first definition of an id wins."""
    abstract: dict[str, etree._Element] = {}
    for r in list(schema.iter(f"{S}rule")):
        if r.get("abstract") == "true":
            abstract.setdefault(r.get("id"), r)
            r.getparent().remove(r)
    return abstract


# -- code generation -------------------------------------------------------------------


@dataclass
class Compiled:
    xslt: bytes
    phase: str
    patterns: list[str]
    files: list[Path]
    quirks: list[Quirk]
    rule_count: int
    assert_count: int
    documents: dict[str, str] = field(default_factory=dict)  # parameter -> file read, as written


def _xsl(tag: str, parent: etree._Element | None = None, **attrs: str) -> etree._Element:
    el = etree.Element(f"{{{XSL}}}{tag}") if parent is None else etree.SubElement(parent, f"{{{XSL}}}{tag}")
    for k, v in attrs.items():
        el.set(k.rstrip("_").replace("_", "-"), v)
    return el


def _svrl(tag: str, parent: etree._Element, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, f"{{{SVRL}}}{tag}")
    for k, v in attrs.items():
        _literal(el, k, v)
    return el


def _literal(el: etree._Element, name: str, value: str) -> None:
    """Set an attribute of a literal result element to exactly ``value``.

    Such attributes are attribute value templates: a test like ``matches(@v, '^[0-9]{8}')``
    copied as is would come out as ``^[0-9]8`` in the SVRL.
    """
    el.set(name, value.replace("{", "{{").replace("}", "}}"))


def _let(parent: etree._Element, let: etree._Element) -> None:
    var = _xsl("variable", parent, name=let.get("name"))
    if let.get("value") is not None:
        var.set("select", let.get("value"))
    else:
        for child in let:
            var.append(copy.deepcopy(child))
        if let.text and not len(let):
            var.text = let.text


def _append_text(parent: etree._Element, text: str | None) -> None:
    """Add text after the last child of ``parent`` (or as its text when it has none)."""
    if not text:
        return
    if len(parent):
        parent[-1].tail = (parent[-1].tail or "") + text
    else:
        parent.text = (parent.text or "") + text


def _message(parent: etree._Element, source: etree._Element) -> None:
    """Copy assertion text, evaluating value-of and name; other markup keeps its text."""
    _append_text(parent, source.text)
    for child in source:
        if child.tag == f"{S}value-of":
            _xsl("value-of", parent, select=child.get("select"))
        elif child.tag == f"{S}name":
            _xsl("value-of", parent, select=f"name({child.get('path') or '.'})")
        elif isinstance(child.tag, str):
            # emph, dir, span, foreign elements: keep their text, evaluate nested value-of
            wrapper = etree.Element("tmp")
            _message(wrapper, child)
            _append_text(parent, wrapper.text)
            for c in list(wrapper):
                parent.append(c)
        _append_text(parent, child.tail)


class _Generator:
    """Emits rule bodies; abstract rules become named templates called at ``extends``.

    Calling a named template keeps the context node, so ``extends`` behaves as the textual
    inclusion ISO describes, without copying a popular abstract rule into hundreds of
    rules. An abstract rule that reads a variable it does not declare (one of its
    caller's) is inlined instead, which is exactly the textual inclusion.
    """

    def __init__(self, sheet: etree._Element, abstract: dict[str, etree._Element], diagnostics: dict[str, etree._Element], globals_: set[str]) -> None:
        self.sheet = sheet
        self.abstract = abstract
        self.diagnostics = diagnostics
        self.globals = globals_
        self.named: dict[str, str] = {}
        self.assertions = 0

    def _needs_inline(self, rid: str, seen: tuple[str, ...] = ()) -> bool:
        rule = self.abstract[rid]
        exprs = [v for el in rule.iter() if isinstance(el.tag, str) for k, v in el.attrib.items() if k in ("test", "value", "select", "path", "subject")]
        declared = {let.get("name") for let in rule.iter(f"{S}let")} | self.globals
        if _free_variables(exprs) - declared:
            return True
        return any(self._needs_inline(e.get("rule"), seen + (rid,)) for e in rule.iter(f"{S}extends") if e.get("rule") in self.abstract and e.get("rule") not in seen)

    def body(self, target: etree._Element, rule: etree._Element, seen: tuple[str, ...]) -> None:
        for child in rule:
            if not isinstance(child.tag, str):
                continue
            if child.tag == f"{S}let":
                _let(target, child)
            elif child.tag in (f"{S}assert", f"{S}report"):
                self.assertions += 1
                _assertion(target, child, self.diagnostics)
            elif child.tag == f"{S}extends":
                rid = child.get("rule")
                if rid is None:
                    raise SchematronError(M("sch.extends_without_rule"))
                if rid in seen:
                    raise SchematronError(M("sch.circular_extends", id=rid))
                if rid not in self.abstract:
                    raise SchematronError(M("sch.unknown_abstract_rule", id=rid))
                if self._needs_inline(rid):
                    self.body(target, self.abstract[rid], seen + (rid,))
                else:
                    _xsl("call-template", target, name=self.template(rid, seen))

    def template(self, rid: str, seen: tuple[str, ...]) -> str:
        if rid not in self.named:
            name = f"abstract-rule-{len(self.named)}"
            self.named[rid] = name
            tpl = _xsl("template", self.sheet, name=name)
            self.body(tpl, self.abstract[rid], seen + (rid,))
        return self.named[rid]


def _active_patterns(schema: etree._Element, phase: str | None, path: Path) -> tuple[str, list[etree._Element], list[etree._Element]]:
    """(the phase run, its patterns in order, its variables)."""
    chosen = phase or schema.get("defaultPhase") or "#ALL"
    patterns = [p for p in schema.iter(f"{S}pattern")]
    if chosen == "#ALL":
        return chosen, patterns, []
    ph = next((p for p in schema.findall(f"{S}phase") if p.get("id") == chosen), None)
    if ph is None:
        raise SchematronError(M("sch.unknown_phase", path=str(path), phase=chosen))
    active = [a.get("pattern") for a in ph.findall(f"{S}active")]
    by_id = {p.get("id"): p for p in patterns if p.get("id")}
    missing = [a for a in active if a not in by_id]
    if missing:
        raise SchematronError(M("sch.phase_patterns", path=str(path), phase=chosen, missing=str(missing)))
    return chosen, [by_id[a] for a in dict.fromkeys(active)], ph.findall(f"{S}let")


def _stylesheet(schema: etree._Element, path: Path) -> tuple[etree._Element, list[tuple[str | None, str | None]]]:
    """The empty XSLT 3 stylesheet: namespaces, output, the schema's own XSLT functions and keys."""
    nsmap = {"xsl": XSL, "svrl": SVRL, "xs": "http://www.w3.org/2001/XMLSchema"}
    ns_decls = [(n.get("prefix"), n.get("uri")) for n in schema.findall(f"{S}ns")]
    for prefix, uri in ns_decls:
        if prefix and prefix != "xml" and prefix not in nsmap:
            nsmap[prefix] = uri
    sheet = etree.Element(f"{{{XSL}}}stylesheet", nsmap=nsmap)
    sheet.set("version", "3.0")
    sheet.set("exclude-result-prefixes", " ".join(p for p in nsmap if p not in ("xsl", "svrl")))
    sheet.set("{http://www.w3.org/XML/1998/namespace}base", path.resolve().as_uri())
    _xsl("output", sheet, method="xml", indent="no", encoding="UTF-8")
    for foreign in schema:
        if isinstance(foreign.tag, str) and foreign.tag.startswith(f"{{{XSL}}}") and foreign.tag.split("}")[1] in ("function", "key", "include", "import"):
            sheet.append(copy.deepcopy(foreign))
    return sheet, ns_decls


def _emit_pattern(sheet: etree._Element, out: etree._Element, gen: "_Generator", pattern: etree._Element, index: int,
                  namespaces: dict[str, str], keys_used: set[str]) -> int:
    """One pattern: its active-pattern record, the nodes it visits, a template per rule.
    Returns how many rules it has."""
    mode = f"M{index}"
    ap = _svrl("active-pattern", out)
    for attr in ("id", "name", "documents"):
        if pattern.get(attr):
            _literal(ap, attr, pattern.get(attr))
    contexts = [r.get("context") for r in pattern.findall(f"{S}rule") if r.get("context")]
    if contexts:
        # Visit only the nodes some rule of this pattern can match, in document order;
        # the templates' priorities then pick the first matching rule for each node.
        select, keys = select_contexts(list(dict.fromkeys(contexts)), namespaces)
        keys_used |= keys
        _xsl("apply-templates", out, select=select, mode=mode)
        # a node selected but matched by no rule (never expected) must not copy its text
        sheet.insert(1, _xsl("mode", name=mode, on_no_match="deep-skip"))
    rules = 0
    for order, rule in enumerate(pattern.findall(f"{S}rule")):
        context = rule.get("context")
        if not context:
            continue
        rules += 1
        # Priority falls with document order: within a pattern the first rule wins.
        tpl = _xsl("template", sheet, match=context, mode=mode, priority=str(100000 - order))
        fired = _svrl("fired-rule", tpl, context=context)
        for attr in ("id", "role", "flag"):
            if rule.get(attr):
                _literal(fired, attr, rule.get(attr))
        gen.body(tpl, rule, ())
    return rules


def compile_schema(path: Path, phase: str | None = None) -> Compiled:
    loaded = load(path)
    schema = loaded.root
    if schema.tag != f"{S}schema":
        raise SchematronError(M("sch.not_schema", path=str(path)))
    binding = (schema.get("queryBinding") or "xslt").lower()
    if binding not in ("xslt2", "xslt3", "xpath2", "xpath3", "xpath31"):
        raise SchematronError(M("sch.binding", path=str(path), binding=binding))
    instantiate_abstract_patterns(schema)
    abstract = collect_abstract_rules(schema)
    chosen, patterns, phase_lets = _active_patterns(schema, phase, path)
    sheet, ns_decls = _stylesheet(schema, path)
    global_lets = schema.findall(f"{S}let") + phase_lets + [let for p in patterns for let in p.findall(f"{S}let")]
    for let in global_lets:
        # schema, phase and pattern variables are all global in XSLT terms
        _let(sheet, let)
    gen = _Generator(sheet, abstract, {d.get("id"): d for d in schema.iter(f"{S}diagnostic")}, {let.get("name") for let in global_lets})

    main = _xsl("template", sheet, match="/")
    out = _svrl("schematron-output", main, phase=chosen, schemaVersion=schema.get("schemaVersion", ""))
    if schema.findtext(f"{S}title"):
        _literal(out, "title", " ".join(schema.findtext(f"{S}title").split()))
    for prefix, uri in ns_decls:
        _svrl("ns-prefix-in-attribute-values", out, prefix=prefix or "", uri=uri or "")
    namespaces = {prefix: uri for prefix, uri in ns_decls if prefix}
    keys_used: set[str] = set()
    rule_count = sum(_emit_pattern(sheet, out, gen, pattern, index, namespaces, keys_used) for index, pattern in enumerate(patterns))
    for name in sorted(keys_used):
        match, use = KEYS[name]
        sheet.insert(1, _xsl("key", name=name, match=match, use=use))
    _share_repeated_assertions(sheet, {let.get("name") for let in global_lets})
    local_names = {let.get("name") for r in [*schema.iter(f"{S}rule"), *abstract.values()] for let in r.iter(f"{S}let")}
    documents = preload_reads(sheet, {let.get("name"): f for let in global_lets if (f := file_name_of(let.get("value")))}, local_names)
    return Compiled(
        xslt=etree.tostring(sheet, xml_declaration=True, encoding="UTF-8"),
        phase=chosen,
        patterns=[p.get("id") or f"#{i}" for i, p in enumerate(patterns)],
        files=loaded.files,
        quirks=loaded.quirks,
        rule_count=rule_count,
        assert_count=gen.assertions,
        documents=documents,
    )


def _share_repeated_assertions(sheet: etree._Element, globals_: set[str]) -> None:
    """Compile an assertion that many rules repeat once, as a named template they call.

    Generated schematrons (ART-DECOR) repeat the same assertion in hundreds of rules: the
    header profile has 1,995 assertions and 875 distinct ones. A named template called
    from the rule keeps the rule's context node, position and size, so the assertion
    means the same; the processor compiles it once. Assertions that read one of the
    rule's own variables stay in place.
    """
    seen: dict[bytes, list[etree._Element]] = {}
    for tpl in sheet.findall(f"{{{XSL}}}template"):
        for code in tpl:
            if code.tag in (f"{{{XSL}}}choose", f"{{{XSL}}}if"):
                seen.setdefault(etree.tostring(code), []).append(code)
    for number, (key, codes) in enumerate(item for item in seen.items() if len(item[1]) > 1):
        expressions = [v for el in codes[0].iter(f"{{{XSL}}}*") for k, v in el.attrib.items() if k in ("test", "select")]
        if _free_variables(expressions) - globals_:
            continue
        name = f"assertion-{number}"
        shared = _xsl("template", sheet, name=name)
        shared.append(copy.deepcopy(codes[0]))
        for code in codes:
            call = _xsl("call-template", name=name)
            call.tail = code.tail
            code.getparent().replace(code, call)


def _assertion(tpl: etree._Element, node: etree._Element, diagnostics: dict[str, etree._Element]) -> None:
    is_assert = node.tag == f"{S}assert"
    test = node.get("test", "true()")
    if is_assert:
        choose = _xsl("choose", tpl)
        _xsl("when", choose, test=test)
        holder = _xsl("otherwise", choose)
        out = _svrl("failed-assert", holder, test=test)
    else:
        holder = _xsl("if", tpl, test=test)
        out = _svrl("successful-report", holder, test=test)
    for attr in ("id", "role", "flag", "see"):
        if node.get(attr):
            _literal(out, attr, node.get(attr))
    loc = _xsl("attribute", out, name="location")
    _xsl("value-of", loc, select=f"path({node.get('subject') or '.'})")
    text = _svrl("text", out)
    _message(text, node)
    for did in (node.get("diagnostics") or "").split():
        diag = diagnostics.get(did)
        if diag is None:
            raise SchematronError(M("sch.unknown_diagnostic", id=did))
        ref = _svrl("diagnostic-reference", out, diagnostic=did)
        _message(ref, diag)
