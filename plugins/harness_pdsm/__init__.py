"""Pro Santé document sharing in mobility (PDSm): the FHIR stand-in, what the software sends
and asks it, and the checks."""
