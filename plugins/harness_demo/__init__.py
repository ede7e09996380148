"""The embedded demo vendor: a small conformant practice-software stand-in, with defects."""
