"""Shared fixtures: offline environment, a tiny model built once per session, registries on both backends
(SQLite in tmp_path, and a fresh database on the test PostgreSQL server named by TUNELAB_TEST_PG_URL)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests never reach the network: a hub download attempt must fail loudly, not hang.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_BENCHMARKS = REPO_ROOT.parent / "shared" / "benchmarks"
EXAMPLE_BENCHMARKS = REPO_ROOT / "examples" / "benchmarks"


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


@pytest.fixture(params=_registry_backends())
def registry_url(request, tmp_path) -> Iterator[str]:
    """The URL of a fresh, empty registry database: SQLite in tmp_path, or a new PostgreSQL database."""
    from tunelab.registry.db import default_url

    if request.param == "sqlite":
        yield default_url(tmp_path)
        return
    admin = request.getfixturevalue("postgres_admin_engine")
    name = f"tunelab_test_{uuid.uuid4().hex[:16]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        # FORCE ends connections a test left open (engines it did not dispose, killed workers).
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def registry(registry_url):
    """An open registry at head on a fresh database, once per backend."""
    from tunelab.registry.db import open_registry

    opened = open_registry(registry_url)
    yield opened
    opened.engine.dispose()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
