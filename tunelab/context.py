"""Shared CLI state: where the home directory, the registry, the artifact root and the project root are, and the
registry opened once per command.

Commands that write open the registry with `registry()`; commands that only read use `reader()`, which reads
an SQLite registry at head without SQLAlchemy. A registry that does not exist yet, or that an older tunelab
wrote, goes through `registry()` either way: it is created or upgraded when the user may write it, and
otherwise the command says so in one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.registry.location import default_url, sqlite_database
from tunelab.registry.reader import NotAtHead, Rows, SqliteReader, open_reader
from tunelab.registry.roots import Roots

if TYPE_CHECKING:
    from tunelab.registry.db import Registry


@dataclass
class AppContext:
    home: Path
    db_url: str | None = None
    artifacts: Path | None = None  # None: the home
    project: Path | None = None
    _registry: Registry | None = field(default=None, repr=False)
    _reader: SqliteReader | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.db_url or default_url(self.home)

    @property
    def roots(self) -> Roots:
        """This machine's artifact root (runs' files) and project root (specs' relative paths): registry/roots.py."""
        return Roots.at(self.artifacts or self.home, self.project)

    def registry(self) -> Registry:
        """The registry through SQLAlchemy, created or brought to head (Alembic) on first use."""
        # Imported here, not at the top: SQLAlchemy and SQLModel cost more than a whole read command, and
        # every command passes through this module.
        from tunelab.registry.db import open_registry

        if self._registry is None:
            self.home.mkdir(parents=True, exist_ok=True)
            self._registry = open_registry(self.url)
        return self._registry

    def reader(self) -> Rows:
        """The registry for a command that only reads (registry/reader.py)."""
        if self._reader is None:
            try:
                self._reader = open_reader(self.url)
            except NotAtHead:
                return self.registry()
        return self._reader

    def existing_reader(self) -> Rows | None:
        """The registry to read, as `reader()`; None when an SQLite registry does not exist yet (it is not made)."""
        database = sqlite_database(self.url)
        if database is not None and database.file is not None and not database.file.is_file():
            return None
        return self.reader()

    def read_only_registry(self) -> Registry:
        """The registry through SQLAlchemy for a command that must never write (reports): not created, not
        migrated, with connections that refuse writes, so it works for a user who may only read."""
        from tunelab.registry.db import open_read_only

        return open_read_only(self.url)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._registry is not None:
            self._registry.engine.dispose()
