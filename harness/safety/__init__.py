"""Network and input safety: every HTTP exchange, the hardened XML, JSON and archive readers."""
