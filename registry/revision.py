"""Which schema revision a registry is at, against the revisions this tunelab knows, without Alembic.

Every command that opens a registry checks this first. Importing Alembic to ask would cost more than a whole
`tunelab ls`, so the chain is read from the revision files' own `revision = ...` and `down_revision = ...`
lines; Alembic runs only to migrate (registry/db.py).
"""

from __future__ import annotations

import re
from enum import Enum
from functools import cache
from pathlib import Path

from tunelab.registry.errors import RegistryError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_ASSIGNMENT = re.compile(r"^(down_revision|revision)\s*(?::[^=\n]*)?=\s*['\"]?(\w*)['\"]?", re.MULTILINE)


class RegistryTooNew(RegistryError):
    """The registry was migrated by a later tunelab: this one does not know its schema."""

    def __init__(self, revision: str) -> None:
        self.revision = revision
        super().__init__(f"this registry was written by a newer tunelab (revision {revision}); upgrade tunelab")


class State(Enum):
    EMPTY = "empty"  # no schema yet
    BEHIND = "behind"  # an older revision this tunelab can upgrade
    CURRENT = "current"  # at this tunelab's head


@cache
def known_revisions() -> tuple[str, ...]:
    """This tunelab's revisions, oldest first (the migrations form one chain)."""
    parent_of: dict[str, str | None] = {}
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = dict(_ASSIGNMENT.findall(path.read_text(encoding="utf-8")))
        if found.get("revision"):
            parent = found.get("down_revision")
            parent_of[found["revision"]] = None if parent in (None, "", "None") else parent
    child_of = {parent: child for child, parent in parent_of.items()}
    chain, revision = [], child_of.get(None)
    while revision is not None:
        chain.append(revision)
        revision = child_of.get(revision)
    if len(chain) != len(parent_of) or len(child_of) != len(parent_of):
        raise RegistryError(f"the migrations in {MIGRATIONS_DIR / 'versions'} do not form one chain: "
                            f"{sorted(parent_of.items(), key=str)}")
    return tuple(chain)


def head() -> str:
    return known_revisions()[-1]


def state_of(stored: str | None) -> State:
    """Where a registry whose alembic_version holds `stored` stands; raises RegistryTooNew past this head."""
    if stored is None:
        return State.EMPTY
    if stored not in known_revisions():
        raise RegistryTooNew(stored)
    return State.CURRENT if stored == head() else State.BEHIND
