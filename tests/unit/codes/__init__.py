"""Product codes: stored, numbered and found one way."""
