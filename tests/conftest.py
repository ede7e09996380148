import pytest

from harness.running.plugins import get_plugin_manager
from harness.running.assembly import target_schema


@pytest.fixture(scope="session")
def schema():
    return target_schema(get_plugin_manager())


@pytest.fixture
def write_target(tmp_path):
    def write(text: str, name: str = "target.toml"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


MINIMAL = """
[product]
id = "p"
name = "P"
version = "1.0.0"
"""
