"""Engine, declarative Base, column types portable across SQLite and PostgreSQL, session_scope()."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import JSON, BigInteger, DateTime, Engine, Integer, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from regulars.config import get_settings


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out, on SQLite (which stores naive) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")
BigID = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType}


def _normalise_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _configure_sqlite(engine: Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers take the write lock up front, so two writers never deadlock on an upgrade.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def make_engine(url: str, *, readonly: bool = False) -> Engine:
    url = _normalise_url(url)
    json_options = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **json_options
        )
        _configure_sqlite(engine, immediate=not readonly)
        return engine
    return create_engine(
        url,
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=True,
        connect_args={"prepare_threshold": None},
        **json_options,
    )


class Database:
    """A writer engine and, on SQLite, a reader engine whose transactions don't lock."""

    def __init__(self, url: str) -> None:
        self.url = _normalise_url(url)
        self.writer = make_engine(self.url)
        self.reader = make_engine(self.url, readonly=True) if self.is_sqlite else self.writer
        self._write_sessions = sessionmaker(self.writer, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.reader, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.writer.dialect.name == "sqlite"

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        factory = self._read_sessions if readonly else self._write_sessions
        session = factory()
        try:
            yield session
            if not readonly:
                session.commit()  # a read-only session is closed without committing
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


_database: Database | None = None
_lock = threading.Lock()


def get_database() -> Database:
    global _database
    with _lock:
        if _database is None:
            _database = Database(get_settings().database_url)
        return _database


def set_database(database: Database | None) -> None:
    """Point the process at another database (tests, the CLI's --database option)."""
    global _database
    with _lock:
        if _database is not None and _database is not database:
            _database.dispose()
        _database = database


@contextmanager
def session_scope(*, readonly: bool = False) -> Iterator[Session]:
    """The one unit of work of a request, task or command: commits on success, else rolls back."""
    with get_database().session(readonly=readonly) as session:
        yield session
