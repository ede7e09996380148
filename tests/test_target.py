"""Target files: validation with precise errors, path resolution, secrets as references."""
from pathlib import Path

import pytest

from harness import TargetError
from harness.running.target import load_target
from tests.conftest import MINIMAL


def test_relative_paths_resolve_against_the_target_folder(write_target, schema, tmp_path):
    path = write_target(MINIMAL + '[exports]\ndocuments = "exports/cda"\n[history]\nbundles = ["old"]\n')
    target = load_target(path, schema)
    assert target.exports["documents"] == (tmp_path / "exports" / "cda").resolve()
    assert target.history_dirs == [(tmp_path / "old").resolve()]


@pytest.mark.parametrize(
    "text, key, expected",
    [
        (MINIMAL.replace('version = "1.0.0"', "version = 3"), "product.version", "expected a string"),
        (MINIMAL + "[endpoints]\nui = 42\n", "endpoints.ui", "URL"),
        (MINIMAL + "[endpoints]\nui = \"ftp://x\"\n", "endpoints.ui", "URL"),
        (MINIMAL + "[history]\nbundles = \"one\"\n", "history.bundles", "list of paths"),
        (MINIMAL + "[services.demo-vendor]\nport = \"80\"\n", "services.demo-vendor.port", "integer"),
        (MINIMAL + "[services.demo-vendor]\ndefects = [1]\n", "services.demo-vendor.defects[0]", "string"),
        (MINIMAL + "[prodcut]\nid = \"x\"\n", "prodcut", "unknown section"),
        (MINIMAL + "[services.nope]\n", "services.nope", "unknown service"),
        (MINIMAL.replace('name = "P"\n', ""), "product.name", "required key missing"),
        (MINIMAL.replace('id = "p"', 'id = "p"\nversoin = "x"'), "product.versoin", "unknown key"),
        ("[endpoints]\nui = \"http://x\"\n", "product", "required section missing"),
        (MINIMAL + "[endpoints]\nui = \"service://ghost/\"\n", "endpoints.ui", "not declared under [services]"),
    ],
)
def test_malformed_target_names_file_key_and_expectation(write_target, schema, text, key, expected):
    path = write_target(text)
    with pytest.raises(TargetError) as exc:
        load_target(path, schema)
    assert exc.value.key == key
    assert exc.value.file == str(path)
    assert expected in exc.value.message("en")
    assert str(path) in exc.value.message("fr")


def test_invalid_toml_and_missing_file(write_target, schema, tmp_path):
    with pytest.raises(TargetError) as exc:
        load_target(write_target("[product\n"), schema)
    assert "invalid TOML" in exc.value.message("en") and "TOML invalide" in exc.value.message("fr")
    with pytest.raises(TargetError) as exc:
        load_target(tmp_path / "absent.toml", schema)
    assert "file not found" in exc.value.message("en")


def test_inline_secret_is_refused(write_target, schema):
    path = write_target(MINIMAL + '[credentials]\napi_token = "s3cr3t-value"\n')
    with pytest.raises(TargetError) as exc:
        load_target(path, schema)
    assert exc.value.key == "credentials.api_token"
    assert "s3cr3t-value" not in exc.value.message("en")


def test_secret_references_resolve_but_never_appear_in_sanitized_target(write_target, schema, tmp_path, monkeypatch):
    (tmp_path / "token.txt").write_text("from-a-file-123\n")
    monkeypatch.setenv("HARNESS_TEST_TOKEN", "from-env-456")
    path = write_target(MINIMAL + '[credentials]\na = "env:HARNESS_TEST_TOKEN"\nb = "file:token.txt"\nc = "env:HARNESS_UNSET_VAR"\n')
    target = load_target(path, schema)
    assert target.secret("a") == "from-env-456"
    assert target.secret("b") == "from-a-file-123"
    assert target.secret("c") is None
    assert sorted(target.secret_values()) == ["from-a-file-123", "from-env-456"]
    text = repr(target.sanitized())
    assert "from-env-456" not in text and "from-a-file-123" not in text
    assert target.sanitized()["credentials"]["a"] == "env:HARNESS_TEST_TOKEN"


def test_command_line_values_override_the_file_and_resolve_paths_from_the_current_folder(write_target, schema, tmp_path, monkeypatch):
    path = write_target(MINIMAL + '[cda]\nkit = "kit-in-file"\n')
    here = tmp_path / "elsewhere"
    here.mkdir()
    monkeypatch.chdir(here)
    target = load_target(path, schema)
    target.override("cda.kit=my/kit")
    target.override("cda.documents=/abs/docs")
    target.override("services.demo-vendor.port=8081")
    target.override("product.version=2.0.0")
    assert target.section("cda") == {"kit": here / "my" / "kit", "documents": Path("/abs/docs")}
    assert target.data["services"]["demo-vendor"]["port"] == 8081
    assert target.product["version"] == "2.0.0"
    # the evidence records what the run used
    assert target.sanitized()["cda"]["kit"] == str(here / "my" / "kit")
    # a list, comma-separated (none: empty)
    target.override("history.bundles=a, b/c,")
    target.override("psc.attacks=")
    assert target.section("history")["bundles"] == [here / "a", here / "b" / "c"] and target.section("psc")["attacks"] == []


@pytest.mark.parametrize("assignment, key, expected", [
    ("cda.kit", "cda.kit", "SECTION.KEY=VALUE"),
    ("kit=x", "kit=x", "SECTION.KEY=VALUE"),
    ("cdaa.kit=x", "cdaa.kit", "unknown section"),
    ("cda.kits=x", "cda.kits", "unknown key (allowed keys: documents, kit)"),
    ("services.demo-vendor.port=eighty", "services.demo-vendor.port", "integer"),
    ("credentials.token=plain-secret", "credentials.token", "must not be written inline"),
])
def test_bad_command_line_values_are_refused_with_the_key(write_target, schema, assignment, key, expected):
    target = load_target(write_target(MINIMAL), schema)
    with pytest.raises(TargetError) as exc:
        target.override(assignment)
    assert exc.value.key == key
    assert expected in exc.value.message("en")
    assert "plain-secret" not in exc.value.message("en")
