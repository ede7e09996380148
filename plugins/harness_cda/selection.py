"""How a compiled pattern finds the nodes its rules may fire on, fast.

A pattern's rules are visited on the nodes that one expression selects: the union of the
rule contexts, each read as the expression that selects what it matches. Two things make
that expression cheap for SaxonC-HE, which has no automatic indexing:

* a first step of the form ``//*[cda:templateId/@root='X']`` (how CDA rules name the
  entry or section they check) becomes ``key(tid, 'X')/parent::*``: the templateIds are
  indexed once per document and transformation, where the pattern scanned the document
  and looked at the children of every element once per pattern. Further predicates
  follow the lookup only when they cannot be positional (``[1]`` means something else
  after ``parent::``). Other first steps stay as written: SaxonC finds ``//cda:x`` by
  a fast scan of element names, faster than building an index of names;
* contexts sharing leading steps are factored into a tree (``P/a | P/(. | b/c)``), so a
  long shared path (ART-DECOR header rules repeat the same ClinicalDocument step hundreds
  of times) is evaluated once, and the processor compiles one short expression instead of
  hundreds of long ones.

Both rewrites keep the selected node set exactly: a union is a set in document order.
"""
from __future__ import annotations

import re

TEMPLATE_KEY = "harness-template-root"
HL7 = "urn:hl7-org:v3"

# xsl:key declarations (match, use) for the keys above.
KEYS = {TEMPLATE_KEY: (f"Q{{{HL7}}}templateId", "@root")}

_STRING = re.compile(r"'[^']*'|\"[^\"]*\"")
_LITERAL = r"('[^']*'|\"[^\"]*\")"
_NAME = r"[A-Za-z_][\w.\-]*"
_TEMPLATE_PREDICATE = re.compile(
    rf"^\s*(?:\./)?(?P<prefix>{_NAME}):templateId(?:/@root\s*=\s*{_LITERAL}|\[\s*@root\s*=\s*{_LITERAL}\s*\])\s*$"
)
_STEP = re.compile(rf"^(?:child::)?(?P<test>\*|(?P<prefix>{_NAME}):(?P<local>{_NAME}))(?P<predicates>\[.*\])?$", re.S)
_COMPARISON = re.compile(r"!=|=|<|>|\b(?:eq|ne|lt|le|gt|ge|and|or)\b")
_BOOLEAN_CALL = re.compile(r"^(?:fn:)?(?:not|exists|empty|boolean|contains|starts-with|ends-with|matches|true|false)\(\)$")
_PATH_STEP = r"(?:\.|\.\.|(?:text|node|comment)\(\)|@?(?:\*|[\w.\-]+:)?[\w.\-*]+)"
_PATH = re.compile(rf"^{_PATH_STEP}(?:/{{1,2}}{_PATH_STEP})*$")


def _scan(text: str):
    """(index, character, bracket depth around it) for each character outside string
    literals; an opening quote is yielded, the literal's content is not."""
    depth, quote = 0, None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "])":
            depth -= 1
        yield i, ch, depth
        if ch in "[(":
            depth += 1


def split_top_level(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside brackets, parentheses and string literals."""
    parts, start = [], 0
    for i, ch, depth in _scan(text):
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def alternatives(pattern: str) -> list[str]:
    """The selecting expressions of each top-level alternative of an XSLT pattern.

    A relative pattern ``p`` matches node N when N is among ``//p`` (descendant-or-self
    from the root, then ``p``); an absolute pattern selects itself.
    """
    out = []
    for alt in split_top_level(pattern, "|"):
        alt = alt.strip()
        out.append(alt if alt.startswith("/") else f"//{alt}")
    return out


def _predicates(text: str) -> list[str]:
    """``[a][b[c]]`` -> ``["a", "b[c]"]``; an empty list when the text is not only predicates."""
    out, start = [], 0
    for i, ch, depth in _scan(text):
        if depth:
            continue
        if ch == "[":
            start = i + 1
        elif ch == "]":
            out.append(text[start:i])
        elif not ch.isspace():
            return []
    return out


def _surface(expr: str) -> str:
    """The expression with string literals emptied and bracketed parts removed."""
    bare = _STRING.sub("''", expr)
    while True:
        # a filtered path is still a path; a call keeps only its name
        reduced = re.sub(r"\[[^\[\]]*\]", "", re.sub(r"\([^()\[\]]*\)", "()", bare))
        if reduced == bare:
            return bare.strip()
        bare = reduced


def is_boolean_predicate(pred: str) -> bool:
    """True when the predicate can only be a truth value (never a position)."""
    if re.search(r"\b(?:position|last)\s*\(", _STRING.sub("''", pred)) or "$" in _STRING.sub("''", pred):
        return False
    surface = _surface(pred)
    if _COMPARISON.search(surface) or _BOOLEAN_CALL.match(surface):
        return True
    return bool(_PATH.match(surface)) and not surface[0].isdigit()


def _quote(value: str) -> str:
    return f"'{value}'" if "'" not in value else f'"{value}"'


def indexed_step(step: str, namespaces: dict[str, str]) -> str | None:
    """The key lookup replacing the step after a leading ``//``, or None to keep the step."""
    m = _STEP.match(step.strip())
    if not m or not m.group("predicates"):
        return None
    preds = _predicates(m.group("predicates"))
    if not preds:
        return None
    t = _TEMPLATE_PREDICATE.match(preds[0])
    if not t or namespaces.get(t.group("prefix")) != HL7:
        return None
    if not all(is_boolean_predicate(p) for p in preds[1:]):
        return None
    if m.group("prefix"):
        uri = namespaces.get(m.group("prefix"))
        if uri is None:
            return None
        parent = f"parent::Q{{{uri}}}{m.group('local')}"
    else:
        parent = "parent::*"
    root = (t.group(2) or t.group(3))[1:-1]
    return f"key('{TEMPLATE_KEY}', {_quote(root)})/{parent}" + "".join(f"[{p}]" for p in preds[1:])


_END = None  # marks, in the trie, a path that ends at this node


def _parts(node: dict) -> list[str]:
    """The alternatives of a trie node, relative to the node its path leads to."""
    parts = []
    for step, child in node.items():
        if step is _END:
            parts.append(".")
        elif step == "":
            # "//" is not factored: SaxonC turns each "//name" into a fast scan of element
            # names, which "//(a | b)" would lose
            parts.extend("descendant-or-self::node()" if sub == "." else f"descendant-or-self::node()/{sub}" for sub in _parts(child))
        else:
            sub = _group(child)
            parts.append(step if sub is None else f"{step}/{sub}")
    return parts


def _group(node: dict) -> str | None:
    parts = _parts(node)
    if parts == ["."]:
        return None
    return parts[0] if len(parts) == 1 else f"({' | '.join(parts)})"


def select_contexts(contexts: list[str], namespaces: dict[str, str]) -> tuple[str, set[str]]:
    """One expression selecting every node some context matches, and the keys it uses.

    Evaluated with the document node as context item.
    """
    keys: set[str] = set()
    trie: dict = {}
    for alt in dict.fromkeys(a for c in contexts for a in alternatives(c)):
        steps = [""] if alt == "/" else split_top_level(alt, "/")
        if len(steps) > 2 and steps[0] == steps[1] == "":
            indexed = indexed_step(steps[2], namespaces)
            if indexed is not None:
                keys.add(TEMPLATE_KEY)
                steps = [indexed] + steps[3:]
        node = trie
        for i, step in enumerate(steps):
            # a leading "" is the root ("/..."), kept apart from the key lookups
            node = node.setdefault(("/" if i == 0 and step == "" else step), {})
        node[_END] = {}
    parts = []
    for step, child in trie.items():
        if step == "/":
            parts.extend("/" if sub == "." else f"/{sub}" for sub in _parts(child))
        else:
            sub = _group(child)
            parts.append(step if sub is None else f"{step}/{sub}")
    return " | ".join(parts).replace("/descendant-or-self::node()/", "//"), keys
