"""Exceptions the core raises for bad input; each carries a bilingual message."""
from __future__ import annotations


class HarnessError(Exception):
    """Base class: an error the user can act on (bad file, bad option), never a bug."""

    def __init__(self, fr: str, en: str) -> None:
        super().__init__(fr)
        self.messages = {"fr": fr, "en": en}

    def message(self, lang: str = "fr") -> str:
        return self.messages.get(lang, self.messages["fr"])


class UnsafeInput(HarnessError):
    """Untrusted input refused by a safety helper (XML or archive)."""

    def __init__(self, reason: str, fr: str, en: str) -> None:
        super().__init__(fr, en)
        self.reason = reason


class TargetError(HarnessError):
    """A target description that cannot be used: names the file, the key and the expectation."""

    def __init__(self, file: str, key: str, fr: str, en: str) -> None:
        super().__init__(f"{file}: {key}: {fr}", f"{file}: {key}: {en}")
        self.file = file
        self.key = key


class ScenarioError(HarnessError):
    """A scenario file that cannot be used, or a selection naming no known scenario."""


class BundleError(HarnessError):
    """An evidence bundle that cannot be read at all."""


class NotApplicable(HarnessError):
    """Raised by a collector when the target does not configure what it needs: the
    scenario is NOT_RUN with this reason (not an ERROR: nothing was attempted)."""
