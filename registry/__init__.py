"""Persistence: SQLModel tables, engine setup, Alembic migrations, the run queue and queries.

Never imports torch or the runner.
"""

from tunelab.registry.errors import NotFound, RegistryError

__all__ = ["NotFound", "RegistryError"]
