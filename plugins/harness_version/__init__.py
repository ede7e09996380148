"""Version-number rules of the label e-santé (convention, article 3.1)."""
