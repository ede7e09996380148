"""Built-in scenario files (data). Installed as the ``harness_scenarios`` package."""
