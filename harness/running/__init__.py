"""Assembling and running a harness session's parts: plugins and their contract, scenario catalogue, target, steps, contexts, checking."""
