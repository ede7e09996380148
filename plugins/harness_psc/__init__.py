"""Pro Santé Connect and the e-ID rules: a loopback OpenID Connect provider, the login driven in a real browser, the session rules."""
