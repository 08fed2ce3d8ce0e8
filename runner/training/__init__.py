"""Training: one recipe per method family over shared model loading, checkpoints and distributed launch."""
