"""User-facing messages of the core, in French (default) and English.

Plugins keep their own messages next to their rules; the core only needs the few below.
"""
from __future__ import annotations

import os

LANGS = ("fr", "en")
DEFAULT_LANG = "fr"

MESSAGES: dict[str, dict[str, str]] = {
    "unknown_scenario": {
        "fr": "Scénario inconnu : {name}. Scénarios connus : {known}",
        "en": "Unknown scenario: {name}. Known scenarios: {known}",
    },
    "no_scenario": {
        "fr": "Aucun fichier de scénario trouvé dans : {dirs}",
        "en": "No scenario file found in: {dirs}",
    },
    "summary_title": {
        "fr": "Verdicts par exigence",
        "en": "Verdicts per requirement",
    },
    "summary_bundle": {
        "fr": "Dossier de preuves : {path}",
        "en": "Evidence bundle: {path}",
    },
    "summary_sensitive": {
        "fr": "  ⚠ Données sensibles dans ce dossier de preuves : {kind} (diffusion restreinte ; les valeurs sont masquées dans les rapports, pas dans les artefacts scellés)",
        "en": "  ⚠ Sensitive data in this evidence bundle: {kind} (restricted distribution; values are masked in reports, not in the sealed artefacts)",
    },
    "summary_bundle_failed": {
        "fr": "Le dossier de preuves n'a pas pu être écrit : {error}",
        "en": "The evidence bundle could not be written: {error}",
    },
    "nothing_evaluated": {
        "fr": "Aucune vérification n'a été évaluée : pas de verdict PASS possible.",
        "en": "No assertion was evaluated: a PASS verdict is not possible.",
    },
    "check_crashed": {
        "fr": "La vérification {name} a échoué de façon inattendue : {error}",
        "en": "Check {name} failed unexpectedly: {error}",
    },
    "collect_failed": {
        "fr": "La collecte {name} a échoué : {error}",
        "en": "Collection {name} failed: {error}",
    },
    "unknown_step": {
        "fr": "Étape {kind} inconnue : {name} (aucun greffon ne la fournit)",
        "en": "Unknown {kind} step: {name} (no plugin provides it)",
    },
    "verify_ok": {
        "fr": "Intégrité vérifiée : {count} membres, empreintes conformes.",
        "en": "Integrity verified: {count} members, hashes match.",
    },
    "verify_failed": {
        "fr": "Intégrité compromise : {count} problème(s).",
        "en": "Integrity broken: {count} problem(s).",
    },
    "replay_ok": {
        "fr": "Rejeu hors ligne : {count} scénario(s), verdicts identiques.",
        "en": "Offline replay: {count} scenario(s), identical verdicts.",
    },
    "replay_diff": {
        "fr": "Rejeu hors ligne : {count} verdict(s) différent(s).",
        "en": "Offline replay: {count} verdict(s) differ.",
    },
}


def resolve_lang(lang: str | None = None) -> str:
    """The language to use: explicit value, then HARNESS_LANG, then French."""
    lang = (lang or os.environ.get("HARNESS_LANG") or DEFAULT_LANG).lower()
    return lang if lang in LANGS else DEFAULT_LANG


def t(key: str, lang: str | None = None, **values: object) -> str:
    """Format the message ``key`` in ``lang``."""
    return MESSAGES[key][resolve_lang(lang)].format(**values)


def both(key: str, **values: object) -> dict[str, str]:
    """The message ``key`` in every language, as stored in findings and evidence."""
    return {lang: MESSAGES[key][lang].format(**values) for lang in LANGS}
