"""Terminology scenarios: coded values checked against the national terminology (SMT)."""
