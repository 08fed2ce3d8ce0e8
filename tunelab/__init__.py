"""tunelab: a declarative experiment manager for LLM fine-tuning (the command-line front door)."""

__version__ = "0.1.0"
