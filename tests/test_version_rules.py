"""Version extraction and ordering used by the version-number checks."""
import pytest

from harness_version.extract import read_page, ui_version, version_in, version_key


@pytest.mark.parametrize(
    "older, newer",
    [("3.1.0", "3.2.1"), ("3.2", "3.2.1"), ("3.2.0-rc.1", "3.2.0"), ("3.2.0-alpha", "3.2.0-beta"),
     ("3.2.0-rc.2", "3.2.0-rc.10"), ("2024.03.1", "2024.10.0"), ("1.9.9", "1.10.0"), ("v2.0", "2.0.1")],
)
def test_orderable_versions_sort_chronologically(older, newer):
    assert version_key(older) < version_key(newer)


def test_equal_versions_and_unorderable_ones():
    assert version_key("3.2") == version_key("3.2.0") == version_key("3.2.0+build.7")
    for bad in ("printemps-2024", "3", "3.2.1.4.5", "R3", "", "3.2.x"):
        assert version_key(bad) is None, bad


def test_version_found_in_about_area_not_in_hidden_or_script_text():
    html = b"""<html><body>
      <script>var version = "9.9.9";</script>
      <div hidden>version 8.8.8</div>
      <p style="display:none">Version 7.7.7</p>
      <p>Nouvelle version disponible</p>
      <footer class="app-about small">Mon Logiciel &mdash; Version&nbsp;: 4.5.6</footer>
    </body></html>"""
    page = read_page(html)
    assert ui_version(page) == ("4.5.6", "footer.app-about")
    assert "9.9.9" not in page.text and "8.8.8" not in page.text and "7.7.7" not in page.text


def test_version_in_body():
    page = read_page(b'<p>Logiciel version 1.2.3</p><a href="/info/a-propos">A propos</a><a href="/x">x</a>')
    assert ui_version(page) == ("1.2.3", "body")
    assert version_in("Version n° 2.0.1.") == "2.0.1"
    assert version_in("aucune information") is None


def test_malformed_html_never_raises():
    for junk in (b"\xff\xfe\x00<<<>>>", b"<div><p>version 1.0.0", b"</a></div><a href=>"):
        read_page(junk)
    assert ui_version(read_page(b"<div><p>version 1.0.0")) == ("1.0.0", "body")


from hypothesis import given
from hypothesis import strategies as st

parts = st.lists(st.integers(min_value=0, max_value=10_000), min_size=2, max_size=4)


@given(parts, parts)
def test_version_order_is_numeric_order(a, b):
    pad = lambda p: tuple(p) + (0,) * (4 - len(p))
    ka, kb = version_key(".".join(map(str, a))), version_key(".".join(map(str, b)))
    assert ka is not None and kb is not None
    assert (ka < kb) == (pad(a) < pad(b))
    assert (ka == kb) == (pad(a) == pad(b))


@given(parts, st.from_regex(r"[0-9A-Za-z]+(\.[0-9A-Za-z]+)*", fullmatch=True))
def test_a_prerelease_sorts_before_its_release(a, pre):
    release = ".".join(map(str, a))
    assert version_key(f"{release}-{pre}") < version_key(release)
