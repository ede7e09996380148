"""CDA documents against the official ANS kit: XSD and ISO Schematron, compiled by us."""
