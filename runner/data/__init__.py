"""Training data: read, clean, render, tokenise, mix and pack a spec's files; fingerprint the result."""
