"""Shared fixtures: offline environment, a tiny model built once per session, registries on both backends
(SQLite in tmp_path, and a database of its own on the test PostgreSQL server named by TUNELAB_TEST_PG_URL).

Migrating a registry costs a noticeable part of a second, so each backend is migrated once per test run into
a template, and a test at head gets a copy of it (a file copy on SQLite, CREATE DATABASE ... TEMPLATE on
PostgreSQL). Tests of the migrations themselves take `empty_registry_url`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Tests never reach the network: a hub download attempt must fail loudly, not hang.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama (2,048-token context) with a BPE tokenizer trained offline on the example data."""
    from tunelab.runner.training.tiny_model import build_tiny_model, default_corpus

    out = tmp_path_factory.mktemp("tiny-llama")
    return build_tiny_model(out, default_corpus(REPO_ROOT), vocab_size=1024, hidden_size=32, num_layers=2,
                            num_heads=2, seed=0)


def _registry_backends() -> list[str]:
    # PostgreSQL is tested by default; TUNELAB_TEST_SQLITE_ONLY=1 is the explicit way out.
    if os.environ.get("TUNELAB_TEST_SQLITE_ONLY") == "1":
        return ["sqlite"]
    return ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_admin_engine():
    """An autocommit engine on the database TUNELAB_TEST_PG_URL names, to CREATE and DROP test databases."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    url = os.environ.get("TUNELAB_TEST_PG_URL", "")
    if not url:
        pytest.fail("the registry tests need PostgreSQL: start it with scripts/postgres.sh start and set "
                    "TUNELAB_TEST_PG_URL to the URL it prints (or set TUNELAB_TEST_SQLITE_ONLY=1 to test "
                    "SQLite alone)", pytrace=False)
    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    yield engine
    engine.dispose()


@contextmanager
def _postgres_database(admin, *, template: str | None = None) -> Iterator[str]:
    """A new database on the test server (empty, or a copy of `template`), dropped afterwards; yields its URL."""
    name = f"tunelab_test_{uuid.uuid4().hex[:16]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"{copy}')
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        # FORCE ends connections a test left open (engines it did not dispose, killed workers).
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(url: str) -> None:
    from tunelab.registry.db import open_registry

    open_registry(url).engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite registry file at head, migrated once per test run."""
    from tunelab.registry.db import default_url

    home = tmp_path_factory.mktemp("registry-template")
    _migrate(default_url(home))
    path = home / "registry.db"
    # Closing the last connection checkpoints the WAL into the file, so the file alone is the database.
    assert not path.with_name("registry.db-wal").exists(), "the template's WAL was not checkpointed"
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres_admin_engine) -> Iterator[str]:
    """The name of a PostgreSQL database at head, migrated once per test run (no connection stays open:
    CREATE DATABASE ... TEMPLATE needs it idle)."""
    from sqlalchemy.engine import make_url

    with _postgres_database(postgres_admin_engine) as url:
        _migrate(url)
        yield make_url(url).database


@pytest.fixture(params=_registry_backends())
def empty_registry_url(request, tmp_path) -> Iterator[str]:
    """The URL of a fresh, empty database (no tables): for tests of the migrations themselves."""
    from tunelab.registry.db import default_url

    if request.param == "sqlite":
        yield default_url(tmp_path)
        return
    with _postgres_database(request.getfixturevalue("postgres_admin_engine")) as url:
        yield url


@contextmanager
def _registry_at_head(request, backend: str, directory: Path) -> Iterator[str]:
    """A registry of its own at head, copied from the migrated template of `backend`; yields its URL."""
    from tunelab.registry.db import default_url

    if backend == "sqlite":
        shutil.copyfile(request.getfixturevalue("sqlite_template"), directory / "registry.db")
        yield default_url(directory)
        return
    admin = request.getfixturevalue("postgres_admin_engine")
    with _postgres_database(admin, template=request.getfixturevalue("postgres_template")) as url:
        yield url


@pytest.fixture(params=_registry_backends())
def registry_url(request, tmp_path) -> Iterator[str]:
    """The URL of a registry of its own at head, once per backend."""
    with _registry_at_head(request, request.param, tmp_path) as url:
        yield url


@pytest.fixture
def registry(registry_url):
    """An open registry at head on a database of its own, once per backend."""
    from tunelab.registry.db import open_registry

    opened = open_registry(registry_url)
    yield opened
    opened.engine.dispose()


@pytest.fixture(scope="module", params=_registry_backends())
def module_registry(request, tmp_path_factory):
    """One open registry at head per backend for a whole module, whose tests only read what a module-scoped
    fixture stored there (a module overrides `registry` with it)."""
    from tunelab.registry.db import open_registry

    with _registry_at_head(request, request.param, tmp_path_factory.mktemp("registry")) as url:
        opened = open_registry(url)
        yield opened
        opened.engine.dispose()


def pytest_collection_modifyitems(config, items) -> None:
    """TUNELAB_TEST_NO_SLURM=1 is the explicit way to leave out the tests that need the Slurm cluster (marked
    slurm); without it they run, and fail naming what to start when there is no cluster."""
    if os.environ.get("TUNELAB_TEST_NO_SLURM") != "1":
        return
    kept = [item for item in items if item.get_closest_marker("slurm") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("slurm")])
        items[:] = kept
