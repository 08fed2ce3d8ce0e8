"""Persistence: SQLModel tables, engine setup, Alembic migrations, the run queue and queries.

Never imports torch or the runner.
"""

from registry.errors import RegistryError, NotFound

__all__ = ["NotFound", "RegistryError"]
