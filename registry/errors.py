"""Typed registry errors; the CLI turns them into one clear line."""


class RegistryError(Exception):
    """The registry cannot do what was asked (bad URL, unreachable database, bad state)."""


class NotFound(RegistryError):
    """No experiment or run with that id."""
