"""Where a registry lives: the default URL under a home directory, and what an SQLite URL names.

Plain string work, no SQLAlchemy: every command needs it before it knows whether it will open an engine.
SQLite URLs are read as SQLAlchemy reads them (`sqlite:///relative`, `sqlite:////absolute`, `sqlite://` in
memory, `sqlite:///file:...?mode=ro&uri=true` for an SQLite URI), so both ways of opening agree on the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode

# Query keys that SQLAlchemy's pysqlite dialect takes as connect() arguments rather than passing into a URI.
_CONNECT_KEYS = frozenset({"uri", "timeout", "isolation_level", "detect_types", "check_same_thread",
                           "cached_statements"})


def default_url(home: Path) -> str:
    return f"sqlite:///{(home / 'registry.db').resolve()}"


@dataclass(frozen=True)
class SqliteDatabase:
    """An SQLite registry named by a URL: what `sqlite3.connect` takes, and the file it is."""

    target: str  # a file path, or with `uri` an SQLite "file:" URI
    uri: bool
    file: Path | None  # None in memory


def sqlite_database(url: str) -> SqliteDatabase | None:
    """The SQLite database a URL names; None for any other kind of database."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0] != "sqlite":
        return None
    database, _, query = rest.removeprefix("/").partition("?")
    database = unquote(database)
    params = dict(parse_qsl(query))
    if not database or database == ":memory:":
        return SqliteDatabase(target=":memory:", uri=False, file=None)
    if params.get("uri", "").lower() == "true":
        passed = urlencode({k: v for k, v in params.items() if k not in _CONNECT_KEYS})
        target = f"{database}?{passed}" if passed else database
        return SqliteDatabase(target=target, uri=True, file=Path(database.removeprefix("file:").removeprefix("//")))
    return SqliteDatabase(target=database, uri=False, file=Path(database))
