"""Shared CLI state: where the home directory and the registry are; the registry opens lazily."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from registry.db import Registry, default_url, open_registry


@dataclass
class AppContext:
    home: Path
    db_url: str | None = None
    _registry: Registry | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.db_url or default_url(self.home)

    def registry(self) -> Registry:
        if self._registry is None:
            self.home.mkdir(parents=True, exist_ok=True)
            self._registry = open_registry(self.url)
        return self._registry
