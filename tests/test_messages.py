"""Every user-facing text comes from a catalogue: complete in both languages, each key used,
no sentence written inline in code."""
import ast
from pathlib import Path

import pytest

from harness import Text, catalogue
from harness.messages import LANGS, Joined, catalogue_path, placeholders

ROOT = Path(__file__).parents[1]
PACKAGES = {
    "harness": ROOT / "harness",
    "harness_cda": ROOT / "plugins" / "harness_cda",
    "harness_demo": ROOT / "plugins" / "harness_demo",
    "harness_dmp": ROOT / "plugins" / "harness_dmp",
    "harness_psc": ROOT / "plugins" / "harness_psc",
    "harness_ins": ROOT / "plugins" / "harness_ins",
    "harness_label": ROOT / "plugins" / "harness_label",
    "harness_mssante": ROOT / "plugins" / "harness_mssante",
    "harness_pdsm": ROOT / "plugins" / "harness_pdsm",
    "harness_terminology": ROOT / "plugins" / "harness_terminology",
    "harness_version": ROOT / "plugins" / "harness_version",
    "harness_xds": ROOT / "plugins" / "harness_xds",
}


def _sources(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def _keys_called(file: Path) -> list[tuple[str, int]]:
    """Keys given to a catalogue in ``file``: ``M("key", ...)`` where ``M = catalogue(...)``."""
    tree = ast.parse(file.read_text(encoding="utf-8"))
    names = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
             and getattr(node.value.func, "id", None) == "catalogue" for t in node.targets if isinstance(t, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in names and node.args:
            first = node.args[0]
            candidates = [first] if isinstance(first, ast.Constant) else [first.body, first.orelse] if isinstance(first, ast.IfExp) else []
            found += [(c.value, node.lineno) for c in candidates if isinstance(c, ast.Constant) and isinstance(c.value, str)]
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_both_languages_have_the_same_keys_and_placeholders(package):
    cat = catalogue(package)
    fr, en = cat.templates("fr"), cat.templates("en")
    assert fr, f"{package}: empty catalogue"
    assert set(fr) == set(en), f"{package}: only in fr {sorted(set(fr) - set(en))}, only in en {sorted(set(en) - set(fr))}"
    for key in fr:
        assert fr[key].strip() and en[key].strip(), f"{package}: {key} is empty"
        # a translation may leave a detail out (the SVRL pattern id in French), never use another one
        a, b = placeholders(fr[key]), placeholders(en[key])
        assert a <= b or b <= a, f"{package}: {key} has other parameters in fr ({sorted(a)}) and en ({sorted(b)})"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_key_is_used_and_every_key_used_exists(package):
    keys = catalogue(package).keys("fr")
    used: set[str] = set()
    for file in _sources(PACKAGES[package]):
        for key, line in _keys_called(file):
            assert key in keys, f"{file.relative_to(ROOT)}:{line}: key {key!r} missing from the {package} catalogue"
            used.add(key)
        # keys held in data tables (M("defect.x") built in a comprehension) count when written as literals
        used |= {n.value for n in ast.walk(ast.parse(file.read_text(encoding="utf-8")))
                 if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in keys}
    assert not keys - used, f"{package}: unused keys {sorted(keys - used)}"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_key_is_written_twice_in_a_catalogue(package):
    """A key written twice: the reader keeps the last, the first one's users get another text."""
    import re

    for lang in LANGS:
        keys = re.findall(r'^msgid "(.+)"$', catalogue_path(package, lang).read_text(encoding="utf-8"), re.MULTILINE)
        twice = sorted({k for k in keys if keys.count(k) > 1})
        assert not twice, f"{package} ({lang}): written twice {twice}"


def test_every_plugin_package_is_checked_here():
    assert set(PACKAGES) - {"harness"} == {p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").is_file()}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_catalogues_are_package_data_in_the_gettext_layout(package):
    for lang in LANGS:
        assert catalogue_path(package, lang).is_file()


def test_no_message_is_written_inline_in_code():
    """No ``fr=``/``en=`` arguments and no ``{"fr": "...", "en": "..."}`` literal with text:
    messages are built from keys; records keep the rendered texts."""
    for folder in PACKAGES.values():
        for file in _sources(folder):
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call):
                    assert not {k.arg for k in node.keywords} & {"fr", "en"}, f"{file.relative_to(ROOT)}:{node.lineno}"
                if isinstance(node, ast.Dict):
                    literal_keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                    texts = [v for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant) and k.value in ("fr", "en")
                             and isinstance(v, (ast.Constant, ast.JoinedStr))]
                    assert not ({"fr", "en"} <= literal_keys and texts), f"{file.relative_to(ROOT)}:{node.lineno}"


def test_messages_render_their_parameters_in_the_same_language():
    M = catalogue("harness")
    inner = M("target.required_key")
    outer = M("target.error", file="t.toml", key="product.id", detail=inner)
    assert outer.texts() == {"fr": "t.toml: product.id: clé obligatoire absente", "en": "t.toml: product.id: required key missing"}
    assert Joined((inner, Text.same("x"))).render("en") == "required key missing; x"
    assert Text.of({"fr": "un", "en": "one"}).render("de") == "un"  # unknown language: French
    with pytest.raises(LookupError):
        M("no.such.key").render("fr")
