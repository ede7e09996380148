"""Hostile or careless target files: each refused at start (exit 4) with the file, the key and
what was expected, no traceback, and never a secret repeated."""
import os
from pathlib import Path

import pytest

from harness import TargetError
from harness.running.target import load_target
from tests.conftest import MINIMAL
from tests.harness_run import run_harness

CANARY = "CANARY-7f3a9c-secret"


def _run(tmp_path: Path, text: str, *extra: str, env: dict | None = None):
    target = tmp_path / "t.toml"
    target.write_text(text)
    run = run_harness(tmp_path, "--scenario", "version-visible-in-ui", "--lang", "en", "--target", str(target), *extra, env=env)
    assert "Traceback" not in run.stdout + run.stderr
    return run


@pytest.mark.parametrize("text, key, expected", [
    (MINIMAL + '[endpoints]\nui = "https://admin:' + CANARY + '@demo.example/"\n', "endpoints.ui", "a URL carries no credentials"),
    (MINIMAL + '[endpoints]\napi = "https://demo.example/api?access_token=' + CANARY + '"\n', "endpoints.api", "a URL carries no secret in its parameters (access_token)"),
    (MINIMAL + '[endpoints]\napi = "https://demo.example/api?user=x&sig=' + CANARY + '"\n', "endpoints.api", "(sig)"),
    (MINIMAL + '[endpoints]\ntoken = "https://demo.example/' + CANARY + '"\n', "endpoints.token", "this key is named like a secret"),
    (MINIMAL + '[credentials]\napi_token = "' + CANARY + '"\n', "credentials.api_token", "secrets must not be written inline"),
    (MINIMAL + "[history]\nbundles = " + "[" * 40 + "]" * 40 + "\n", "-", "nested more than 16 levels deep"),
    (MINIMAL + "[history]\nbundles = " + "[" * 3000 + "]" * 3000 + "\n", "-", "nested more than 16 levels deep"),
    ("\x00\x01\x02 not toml", "-", "invalid TOML"),
])
def test_a_hostile_target_is_refused_with_its_key_and_no_secret_shown(write_target, schema, text, key, expected):
    with pytest.raises(TargetError) as exc:
        load_target(write_target(text), schema)
    assert exc.value.key == key and expected in exc.value.message("en")
    assert CANARY not in exc.value.message("en") + exc.value.message("fr")


def test_a_huge_target_file_is_not_read_whole(write_target, schema):
    with pytest.raises(TargetError) as exc:
        load_target(write_target(MINIMAL + "# " + "x" * (2 * 1024 * 1024) + "\n"), schema)
    assert "target file too large" in exc.value.message("en")


def test_a_file_secret_outside_the_target_folder_is_refused_unread(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.txt").write_text(CANARY + "\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "link.txt").symlink_to(outside / "secret.txt")  # a link inside pointing out: the same
    for ref in (f"file:{outside / 'secret.txt'}", "file:../elsewhere/secret.txt", "file:link.txt", "file:/etc/shadow"):
        run = _run(project, MINIMAL + f'[credentials]\napi_token = "{ref}"\n')
        assert run.returncode == 4, run.stdout + run.stderr
        assert "credentials.api_token: the secret file must be in the target's folder or a folder of HARNESS_SECRET_DIRS" in run.stderr
        assert CANARY not in run.stdout + run.stderr
    # an explicit allow-list lets it through
    run = _run(project, MINIMAL + f'[credentials]\napi_token = "file:{outside / "secret.txt"}"\n', env={"HARNESS_SECRET_DIRS": str(outside)})
    assert run.returncode != 4


def test_secret_files_are_read_bounded(tmp_path, schema):
    (tmp_path / "big.txt").write_text("x" * (128 * 1024))
    target = tmp_path / "t.toml"
    target.write_text(MINIMAL + '[credentials]\napi_token = "file:big.txt"\n')
    with pytest.raises(TargetError) as exc:
        load_target(target, schema).secret("api_token")
    assert "secret file too large" in exc.value.message("en")


def test_a_password_in_a_command_line_value_is_refused_too(tmp_path):
    run = _run(tmp_path, MINIMAL, "--set", f"endpoints.ui=https://u:{CANARY}@x.example/")
    assert run.returncode == 4 and "a URL carries no credentials" in run.stderr and CANARY not in run.stderr


@pytest.mark.parametrize("assignment", ["product.components.api_token", "endpoints.access_token", "exports.client_secret"])
def test_a_secret_named_key_given_on_the_command_line_is_refused_as_the_file_refuses_it(write_target, schema, assignment):
    """Issue 24: ``--set`` of a key named like a credential was accepted and recorded, where the
    same key in the target file is refused."""
    target = load_target(write_target(MINIMAL), schema)
    with pytest.raises(TargetError) as exc:
        target.override(f"{assignment}={CANARY}")
    assert "named like a secret" in exc.value.message("en") and CANARY not in exc.value.message("en")
    assert CANARY not in str(target.raw) and CANARY not in str(target.data)


def test_a_plugin_declaring_a_secret_named_key_as_plain_text_is_refused():
    from harness import PluginError, hookimpl
    from harness.running.assembly import target_schema
    from harness.running.plugins import get_plugin_manager

    class Careless:
        @hookimpl
        def harness_target_schema(self):
            return {"careless": {"password": "str"}}

    pm = get_plugin_manager()
    pm.register(Careless(), name="careless")
    with pytest.raises(PluginError) as exc:
        target_schema(pm)
    assert exc.value.message("en") == ("Plugin careless: [careless] password is named like a secret but typed 'str': "
                                       "it must be of type secret (an env:/file: reference)")


def test_nothing_is_written_outside_the_evidence_folder(tmp_path):
    """A run writes its bundle under --evidence-dir and its caches under XDG_CACHE_HOME; nothing else."""
    home = tmp_path / "home"
    home.mkdir()
    before = {p for p in tmp_path.rglob("*")}
    run = run_harness(tmp_path, "--scenario", "version", env={"XDG_CACHE_HOME": str(tmp_path / "cache"), "HOME": str(home)})
    assert run.returncode == 0
    created = {p for p in tmp_path.rglob("*")} - before
    outside = [p for p in created if not p.is_relative_to(tmp_path / "reports") and not p.is_relative_to(tmp_path / "cache")]
    assert outside == [], outside
    assert not any(p.name.startswith(".staging-") for p in (tmp_path / "reports").iterdir())
    assert os.listdir(home) == []
