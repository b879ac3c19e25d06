"""Migrations: one head, and the migrated schema equals the models on every backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from regulars.db import Database
from regulars.migrate import heads
from regulars.models import Base


def test_migrations_have_one_head() -> None:
    assert len(heads("sqlite://")) == 1


def test_migrated_schema_matches_the_models(database: Database) -> None:
    with database.writer.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
