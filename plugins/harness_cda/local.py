"""Where this plugin keeps things on the user's machine, and what says its code changed.

Light on purpose (the standard library and the core's version only): the kit server's client
(:mod:`.remote`, which ``harness-kit-check`` loads first) reads it before anything else is loaded.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

KIT_PARTS = ("schematrons", "jeuxDeValeurs", "infrastructure")  # what a kit is made of (its identity: kit.content_digest)


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/harness`` (default ``~/.cache/harness``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "harness"


def state_path() -> Path:
    """The kit server's state file (``HARNESS_KIT_SERVER_STATE``, else in the cache)."""
    return Path(os.environ.get("HARNESS_KIT_SERVER_STATE") or cache_root() / "kit-server.json")


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """This plugin's code (every module of it) and the core's version: a kit server started
    before the harness changed would answer with the old code, so a client of the new one does
    not use it."""
    from harness import core_version

    digest = hashlib.sha256(core_version().encode() + b"\0")
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]
