"""Typed registry errors; the CLI turns them into one clear line."""

from tunelab.experiments.errors import TunelabError


class RegistryError(TunelabError):
    """The registry cannot do what was asked (bad URL, unreachable database, bad state)."""


class NotFound(RegistryError):
    """No experiment or run with that id."""


class RunNotHeld(RegistryError):
    """A write for a run by a worker that no longer holds it (re-queued while it stalled, taken by another): refused,
    so a stale owner writes nothing."""


class RegistryUnwritable(RegistryError):
    """The registry's disk is full: a worker stops (its run released when the registry can be written again)."""


# The largest id a registry row can have: ids are SQL INTEGER columns, 32 signed bits on PostgreSQL.
MAX_ID = 2**31 - 1
# The largest count a query takes (LIMIT): 64 signed bits on both databases.
MAX_COUNT = 2**63 - 1


def database_failure(exc: BaseException, url: str) -> str | None:
    """One line on a failure of the registry's database itself (damaged, read-only, full, unreachable); None for
    any other error, which is a bug and keeps its traceback."""
    import sqlite3

    cause = getattr(exc, "orig", None) or exc
    text = " ".join(str(cause).split()) or type(cause).__name__
    lowered = text.lower()
    if isinstance(cause, sqlite3.DatabaseError):
        if "malformed" in lowered or "not a database" in lowered:
            return (f"the registry {url} is damaged ({text}): restore it from a backup (`sqlite3 FILE .recover` "
                    "may save what is left)")
        if "readonly" in lowered or "read-only" in lowered:
            return (f"the registry {url} is read-only ({text}): this command writes to it; ls, show, compare and "
                    "report only read")
        if "full" in lowered or "disk i/o" in lowered:
            return f"the registry {url} cannot be written ({text}): is its disk full?"
        if "unable to open" in lowered or "locked" in lowered:
            return f"cannot open the registry {url}: {text}"
        return None
    # PostgreSQL (psycopg) errors carry their SQLSTATE: read-only transaction, disk full, connection failures.
    state = str(getattr(cause, "sqlstate", "") or "")
    if state == "25006":
        return (f"the registry {url} is read-only for this user ({text}): this command writes to it; ls, show, "
                "compare and report only read")
    if state == "53100":
        return f"the registry {url} cannot be written ({text}): its server's disk is full"
    if state.startswith("08"):
        return f"cannot reach the registry {url}: {text}"
    return None


def full_disk_cause(exc: BaseException) -> BaseException | None:
    """The database error in `exc` or what it was raised from that says the registry's disk is full (SQLite's
    SQLITE_FULL, PostgreSQL's disk_full); None when there is none. A plain ENOSPC is not one: it is the disk of
    the run's own files (a checkpoint, the final weights), which fails the run instead."""
    import sqlite3

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        cause = getattr(current, "orig", None) or current
        if isinstance(cause, sqlite3.DatabaseError) and "full" in str(cause).lower():
            return cause
        if str(getattr(cause, "sqlstate", "") or "") == "53100":
            return cause
        current = current.__cause__ or current.__context__
    return None
