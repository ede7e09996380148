"""A proof: a run sealed into its bundle, replayed offline to the same verdicts, compared with another for equivalence."""
