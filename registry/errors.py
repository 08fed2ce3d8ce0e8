"""Typed registry errors; the CLI turns them into one clear line."""

from tunelab.experiments.errors import TunelabError


class RegistryError(TunelabError):
    """The registry cannot do what was asked (bad URL, unreachable database, bad state)."""


class NotFound(RegistryError):
    """No experiment or run with that id."""
