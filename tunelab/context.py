"""Shared CLI state: where the home directory and the registry are; the registry opens lazily."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunelab.registry.db import Registry



@dataclass
class AppContext:
    home: Path
    db_url: str | None = None
    _registry: Registry | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        from tunelab.registry.db import default_url

        return self.db_url or default_url(self.home)

    def registry(self) -> Registry:
        from tunelab.registry.db import open_registry

        if self._registry is None:
            self.home.mkdir(parents=True, exist_ok=True)
            self._registry = open_registry(self.url)
        return self._registry

    def reader(self) -> Registry:
        """The registry opened to read only (reports): not created, not migrated, never written."""
        from tunelab.registry.db import open_reader

        return open_reader(self.url)
