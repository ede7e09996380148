"""Exceptions the core raises for bad input; each carries a message (key + parameters)."""
from __future__ import annotations

from .messages import Localized, catalogue

M = catalogue(__name__)


class HarnessError(Exception):
    """Base class: an error the user can act on (bad file, bad option), never a bug."""

    def __init__(self, detail: Localized) -> None:
        super().__init__(detail.render("fr"))
        self.detail = detail

    def message(self, lang: str | None = None) -> str:
        return self.detail.render(lang)

    @property
    def messages(self) -> dict[str, str]:
        """The message in every language, as records store it."""
        return self.detail.texts()


class UnsafeInput(HarnessError):
    """Untrusted input refused by a safety helper (XML or archive)."""

    def __init__(self, reason: str, detail: Localized) -> None:
        super().__init__(detail)
        self.reason = reason


class TargetError(HarnessError):
    """A target description that cannot be used: names the file, the key and the expectation."""

    def __init__(self, file: str, key: str, detail: Localized) -> None:
        super().__init__(M("target.error", file=file, key=key, detail=detail))
        self.file = file
        self.key = key


class ScenarioError(HarnessError):
    """A scenario file that cannot be used, or a selection naming no known scenario."""


class BundleError(HarnessError):
    """An evidence bundle that cannot be read at all."""


class PluginError(HarnessError):
    """A plugin that breaks the plugin contract (unknown hook, conflicting declaration)."""


class NotApplicable(HarnessError):
    """Raised by a collector when the target does not configure what it needs: the
    scenario is NOT_RUN with this reason (not an ERROR: nothing was attempted)."""
