"""INS (national health identity) rules, shared by every plugin that meets a patient identity."""
