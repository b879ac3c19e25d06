"""Engine, declarative Base, column types portable across SQLite and PostgreSQL, session_scope()."""

from __future__ import annotations

import fcntl
import operator
import os
import re
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Engine,
    Integer,
    Row,
    String,
    Table,
    bindparam,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, QueryableAttribute, Session, sessionmaker
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import Compiled
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.selectable import SelectBase, TableValuedAlias
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator, TypeEngine

from regulars.config import get_settings


class _SQLiteUTCText(sqlite.DATETIME):
    """SQLite's DATETIME text ("2026-03-02 10:00:00.000000", always UTC here) read straight
    into an aware UTC datetime: one `fromisoformat` of the text with its offset added, instead
    of SQLAlchemy's parse followed by `replace(tzinfo=UTC)` (0.23 against 0.78 µs a value
    through UTCDateTime; the keyword `replace` alone was 0.58). The live segment path reads
    several hundred a batch. Written as SQLAlchemy writes it (the bind side is unchanged)."""

    def result_processor(
        self, dialect: Dialect, coltype: object
    ) -> Callable[[Any], datetime | None]:
        parse = super().result_processor(dialect, coltype)
        assert parse is not None

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            if isinstance(value, str):
                try:
                    return datetime.fromisoformat(value + "+00:00")
                except ValueError:  # not the stored form (a bare date, a value with an offset)
                    pass
            return cast(datetime | None, parse(value))

        return process


_SQLITE_UTC_TEXT = _SQLiteUTCText()  # type: ignore[no-untyped-call]  # SQLAlchemy's own, untyped


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out, on SQLite (which stores naive) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return _SQLITE_UTC_TEXT
        return super().load_dialect_impl(dialect)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is UTC:  # SQLite's text is read as UTC already
            return value
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
        # Large, so that under load the checkpointer thread folds the WAL off the write lock
        # and a hot page reaches the database file once a pass, not once per 10,000 pages.
        pages = get_settings().sqlite_wal_autocheckpoint
        cursor.execute(f"PRAGMA wal_autocheckpoint={pages}")
        # The one writer connection keeps the hot index pages of ingestion; readers need less.
        cursor.execute(f"PRAGMA cache_size=-{(64 if immediate else 16) * 1024}")  # in KiB
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers take the write lock up front, so two writers never deadlock on an upgrade.
        # Straight to the driver: through SQLAlchemy's execution (events, a cursor result) it
        # cost a sixth of an empty transaction, and every request, job and round opens some.
        connection.connection.driver_connection.execute(begin)


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def make_engine(url: str, *, readonly: bool = False) -> Engine:
    url = _normalise_url(url)
    json_options = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            # Writers take turns (SQLiteWriterQueue), so one connection serves them all and
            # keeps its page cache warm; readers reuse the most recently used connection.
            pool_size=1 if not readonly else 5,
            max_overflow=0 if not readonly else 10,
            pool_use_lifo=True,
            **json_options,
        )
        _configure_sqlite(engine, immediate=not readonly)
        return engine
    engine = create_engine(
        url,
        pool_size=10,
        max_overflow=10,
        connect_args={"prepare_threshold": None},
        **json_options,
    )
    _ping_when_idle(engine)
    return engine


# A pooled PostgreSQL connection that sat unused this long is pinged before it is handed out.
IDLE_PING_SECONDS = 10.0


def _ping_when_idle(engine: Engine) -> None:
    """Ping a connection on checkout only when it sat idle in the pool for IDLE_PING_SECONDS.

    SQLAlchemy's `pool_pre_ping` pings on every checkout: a round trip (a BEGIN, a SELECT 1)
    in front of every request and job, a tenth of a millisecond that was a twentieth of a
    live segment re-evaluation. Connections die while idle (a restarted server, a proxy's
    idle timeout), so only those are checked; a dead one is replaced, and the caller never
    sees it. A connection that breaks while busy fails its transaction either way."""

    @event.listens_for(engine, "checkin")
    def _remember_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["regulars.checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get("regulars.checked_in")
        if checked_in is None or time.monotonic() - checked_in < IDLE_PING_SECONDS:
            return  # new, or back from work a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
            dbapi_connection.rollback()  # the ping began a transaction; leave it as it was
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError("the pooled connection is gone; connecting anew") from exc


class SQLiteWriterQueue:
    """SQLite lets one writer in at a time, and its busy handler makes the others sleep and
    retry. Writers queue here instead: threads on a lock, processes (several `serve` workers,
    a `worker`) on an flock of `<database file>.lock`, and each wakes as soon as its turn comes.
    Re-entrant within a thread."""

    def __init__(self, database_path: str | None) -> None:
        self._lock_path = f"{database_path}.lock" if database_path else None
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self._thread_lock:
            outermost = self._depth == 0
            self._depth += 1
            try:
                if outermost:
                    self._lock_file(fcntl.LOCK_EX)
                yield
            finally:
                self._depth -= 1
                if outermost:
                    self._lock_file(fcntl.LOCK_UN)

    def _lock_file(self, operation: int) -> None:
        if self._lock_path is None:
            return
        if self._fd is None:
            self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, operation)


class Database:
    """A writer engine and, on SQLite, a reader engine whose transactions don't lock, and a
    queue that lets SQLite writers in one at a time."""

    def __init__(self, url: str) -> None:
        self.url = _normalise_url(url)
        self.writer = make_engine(self.url)
        self.reader = make_engine(self.url, readonly=True) if self.is_sqlite else self.writer
        self._write_sessions = sessionmaker(self.writer, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.reader, expire_on_commit=False)
        path = make_url(self.url).database if self.is_sqlite else None
        self._writers = SQLiteWriterQueue(path if path not in (None, "", ":memory:") else None)

    @property
    def is_sqlite(self) -> bool:
        return self.writer.dialect.name == "sqlite"

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        if readonly or not self.is_sqlite:
            with self._session(readonly=readonly) as session:
                yield session
            return
        with self._writers.turn(), self._session(readonly=False) as session:
            yield session

    @contextmanager
    def _session(self, *, readonly: bool) -> Iterator[Session]:
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


class SQLiteCheckpointer:
    """Folds the WAL back into the database file from a thread of its own, every `every`
    seconds, so committing writers rarely pay for it (SQLite's automatic checkpoint stays as
    the fallback). A PASSIVE checkpoint takes no write lock, and sqlite3 releases the GIL
    while it runs. `with SQLiteCheckpointer(database):` runs it for the block (nothing on
    PostgreSQL)."""

    def __init__(self, database: Database, *, every: float = 1.0) -> None:
        self._database = database
        self._every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self._database.is_sqlite:
            return
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> SQLiteCheckpointer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def checkpoint_once(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint: (busy, frames in the WAL, frames folded back)."""
        connection = self._database.reader.raw_connection()
        try:
            cursor = connection.cursor()
            busy, frames, folded = cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            cursor.close()
            return int(busy), int(frames), int(folded)
        finally:
            connection.close()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.checkpoint_once()


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


# --- small helpers every repository uses ------------------------------------------------------

IN_LIST_CHUNK = 500  # rows per IN (...) list or multi-row INSERT: well under every driver's limit


def chunks(items: Sequence[Any], size: int = IN_LIST_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def table_of(model: type[Any]) -> Table:
    """The Core table of a model, for statements that skip the ORM's overhead."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


class _JSONList(TypeDecorator[list[str | int]]):
    """A list of ids (text or integers) sent to SQLite as one JSON array, for `json_each`."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: Iterable[str | int] | None, dialect: Dialect) -> str | None:
        return None if value is None else orjson.dumps(list(value)).decode()


def one_of(
    session: Session, column: ColumnElement[Any] | QueryableAttribute[Any], values: Iterable[Any]
) -> ColumnElement[bool]:
    """`column IN values` for a list of ids, as one parameter whatever the count. An IN list
    of 500 ids is 500 bind parameters that SQLAlchemy renders again for every statement and
    the driver parses again (the text differs with the count, so nothing caches it), which
    cost more than the query itself in the worker's batches. PostgreSQL: `column =
    ANY(:values)`, an array. SQLite: `column IN (SELECT value FROM json_each(:values))`, a
    JSON array; both plan it as the IN list (an index search per value)."""
    return _one_of(session, column, lambda type_: bindparam(None, list(values), type_=type_))


def one_of_parameter(
    session: Session, column: ColumnElement[Any] | QueryableAttribute[Any], name: str
) -> ColumnElement[bool]:
    """`column` is one of the list given at execution as the parameter `name`: what `one_of`
    says, for a statement built once and run many times (see `prepared`)."""
    return _one_of(session, column, lambda type_: bindparam(name, type_=type_))


def _one_of(
    session: Session,
    column: ColumnElement[Any] | QueryableAttribute[Any],
    parameter: Callable[[TypeEngine[Any]], BindParameter[Any]],
) -> ColumnElement[bool]:
    """The list `parameter(type)` makes, as the dialect takes one: an array or JSON."""
    element = column.expression
    if is_postgres(session):
        return _OneOf(element, parameter(_array_of(element.type)))
    if not isinstance(element.type, String | Integer):  # json_each answers JSON's own types
        raise TypeError(f"one_of on SQLite is for text and integer ids, not {element.type!r}")
    return _OneOf(element, parameter(_JSONList()))


class _OneOf(ColumnElement[bool]):
    """`column` is one of the list in `parameter`, as one small element with a compile rule
    per dialect. Built from SQLAlchemy's own constructs (`column == any_(...)`, a
    table-valued `json_each`) it left objects in reference cycles on every call (a bound
    parameter and its comparator, an alias and its column collections: eight on PostgreSQL,
    some forty on SQLite), made on every statement of the workers' hot paths; the cyclic
    collector's passes over that litter paused the process for 20 to 60 ms."""

    __visit_name__ = "one_of"
    inherit_cache = False  # the cache key comes from _traverse_internals below
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("parameter", InternalTraversal.dp_clauseelement),
    ]
    type = Boolean()
    _is_implicitly_boolean = True  # a condition: SQLite needs no "= 1" after it

    def __init__(self, column: ColumnElement[Any], parameter: BindParameter[Any]) -> None:
        self.column = column
        self.parameter = parameter

    def rendered(self, compiler: Any, **kw: Any) -> tuple[str, str]:
        """The column's and the list parameter's SQL, for a dialect's compile rule."""
        return compiler.process(self.column, **kw), compiler.process(self.parameter, **kw)


@compiles(_OneOf, "sqlite")
def _one_of_on_sqlite(element: _OneOf, compiler: Any, **kw: Any) -> str:
    column, listed = element.rendered(compiler, **kw)
    return f"({column} IN (SELECT value FROM json_each({listed})))"  # grouped: safe under NOT


@compiles(_OneOf, "postgresql")
def _one_of_on_postgresql(element: _OneOf, compiler: Any, **kw: Any) -> str:
    column, listed = element.rendered(compiler, **kw)
    return f"({column} = ANY ({listed}))"


def unnested_parameter(name: str, item: TypeEngine[Any]) -> TableValuedAlias:
    """PostgreSQL: the list given at execution as the parameter `name`, as a table of one
    column, `value` (for joins whose plan must start from the list; see `_OneOf` for IN)."""
    return func.unnest(bindparam(name, type_=_array_of(item))).table_valued("value")


_arrays: dict[tuple[type, str], ARRAY[Any]] = {}


def _array_of(item: TypeEngine[Any]) -> ARRAY[Any]:
    """One ARRAY type per item type: a new one per call is more reference cycles."""
    key = (type(item), repr(item))
    found = _arrays.get(key)
    if found is None:
        found = _arrays[key] = ARRAY(item)
    return found


Built = TypeVar("Built")
_prepared: dict[tuple[Hashable, ...], Any] = {}
PREPARED_MAX = 512  # statement shapes kept; more would mean keys that are not shapes


def prepared(session: Session, key: tuple[Hashable, ...], build: Callable[[], Built]) -> Built:
    """The statement `build` makes for this database's dialect, built once per `key` and
    reused. Building a statement (select, where, in_) cost ten times what SQLite took to run
    it on the live paths, and a reused statement object also keeps the cache key SQLAlchemy
    computes for it. `key` names the shape: everything `build` reads besides the session."""
    full_key = (session.get_bind().dialect.name, *key)
    found = _prepared.get(full_key)
    if found is None:
        if len(_prepared) >= PREPARED_MAX:
            _prepared.clear()
        found = _prepared[full_key] = build()
    return cast(Built, found)


def read_in_chunks(
    session: Session,
    key: tuple[Hashable, ...],
    build: Callable[[], Executable],
    values: Sequence[Any],
    *,
    name: str = "ids",
    params: Mapping[str, Any] | None = None,
) -> list[Row[Any]]:
    """The rows of the select `build` makes (built once per `key`, see `prepared`) for a
    list of values given as its list parameter `name` (`one_of_parameter`), a chunk at a
    time, with the other `params`: the per-batch reads of the workers' hot paths."""
    query = prepared(session, key, build)
    found: list[Row[Any]] = []
    for chunk in chunks(values):
        found.extend(session.execute(query, {**(params or {}), name: list(chunk)}))
    return found


def finds_any(
    session: Session,
    key: tuple[Hashable, ...],
    build: Callable[[], Executable],
    params: Mapping[str, Any],
) -> bool:
    """Whether the select `build` makes (built once per `key`, see `prepared`) finds a row:
    the worker's look for due work before it takes a write transaction."""
    return session.execute(prepared(session, key, build), dict(params)).first() is not None


# --- reads in one round trip: the live paths on PostgreSQL -------------------------------------

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class _PipelinePlan:
    """A select compiled once for the driver: its SQL, what each parameter and each result
    column needs converting (what SQLAlchemy would do on the way in and out)."""

    sql: str
    compiled: Compiled
    binds: tuple[tuple[str, Processor], ...]
    columns: tuple[Processor | None, ...]
    # The parameters' names in the order of a positional driver's placeholders (SQLite).
    positions: tuple[str, ...] = ()

    def parameters(self, given: Mapping[str, Any]) -> dict[str, Any]:
        values = dict(self.compiled.construct_params(dict(given)) or {})
        for name, process in self.binds:
            if values.get(name) is not None:
                values[name] = process(values[name])
        return values

    def positional(self, given: Mapping[str, Any]) -> list[Any]:
        values = self.parameters(given)
        return [values[name] for name in self.positions]

    def rows(self, fetched: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        converting = [(i, p) for i, p in enumerate(self.columns) if p is not None]
        if not converting:
            return [tuple(row) for row in fetched]
        rows = []
        for row in fetched:
            values = list(row)
            for position, process in converting:
                values[position] = process(values[position])
            rows.append(tuple(values))
        return rows


# By statement (compared by identity: statements come from `prepared`, one per shape).
_plans: dict[SelectBase, _PipelinePlan] = {}


def _plan_for(dialect: Dialect, statement: SelectBase) -> _PipelinePlan:
    found = _plans.get(statement)
    if found is not None:
        return found
    compiled = statement.compile(dialect=dialect)
    processors = {  # once per name: a parameter used in several places is converted once
        name: process
        for bind, name in compiled.bind_names.items()
        if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
    }
    binds = tuple(processors.items())
    columns = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None)
        for column in statement.selected_columns
    )
    sql = str(compiled)
    if "POSTCOMPILE" in sql:  # an IN list rendered per execution: there is no text to reuse
        raise ValueError(f"read_together needs its lists as one parameter (db.one_of): {sql}")
    plan = _PipelinePlan(sql, compiled, binds, columns, tuple(compiled.positiontup or ()))
    if len(_plans) >= PREPARED_MAX:
        _plans.clear()
    _plans[statement] = plan
    return plan


def read_together(
    session: Session, reads: Sequence[tuple[SelectBase, Mapping[str, Any]]]
) -> list[list[tuple[Any, ...]]]:
    """The rows of several selects (statements built once, see `prepared`), as plain tuples,
    each compiled once and sent straight through the driver (SQLAlchemy's execution around a
    one-customer read cost more than the database's work).

    PostgreSQL: sent together in one pipeline, so the reads (and the transaction's BEGIN,
    when they open it) cost one round trip instead of one each; on the live paths the round
    trips were most of the time. SQLite: run one after the other, which costs nothing more
    in-process. Pending ORM changes are flushed first, as an ORM read would."""
    session.flush()
    connection = session.connection()
    plans = [_plan_for(connection.dialect, statement) for statement, _ in reads]
    driver = cast(Any, connection.connection.driver_connection)
    dbapi_error: type[Exception] = connection.dialect.loaded_dbapi.Error
    run = _pipelined if is_postgres(session) else _one_after_another
    try:
        return run(driver, plans, [params for _, params in reads])
    except dbapi_error as exc:  # the same exception classes as through SQLAlchemy
        raise DBAPIError.instance(plans[0].sql, None, exc, dbapi_error) from exc


def _pipelined(
    driver: Any, plans: Sequence[_PipelinePlan], params: Sequence[Mapping[str, Any]]
) -> list[list[tuple[Any, ...]]]:
    cursors = []
    with driver.pipeline():
        for plan, given in zip(plans, params, strict=True):
            cursor = driver.cursor()
            cursor.execute(plan.sql, plan.parameters(given))
            cursors.append(cursor)
    found = [plan.rows(cursor.fetchall()) for plan, cursor in zip(plans, cursors, strict=True)]
    for cursor in cursors:
        cursor.close()
    return found


def _one_after_another(
    driver: Any, plans: Sequence[_PipelinePlan], params: Sequence[Mapping[str, Any]]
) -> list[list[tuple[Any, ...]]]:
    return [
        plan.rows(driver.execute(plan.sql, plan.positional(given)).fetchall())
        for plan, given in zip(plans, params, strict=True)
    ]


# --- bulk writes: the hot path of ingestion ---------------------------------------------------

Finish = Callable[[Any], Any]
_BINARY_PLACEHOLDER = re.compile(r"%\((u_\w+)\)s")
_compiled: dict[tuple[str, str, tuple[str, ...], str], tuple[str, tuple[str, ...]]] = {}


def bulk_write(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    shape: str,
    finish: Finish = lambda statement: statement,
    returning: Any = None,
) -> list[Any]:
    """Write many rows in one statement whose SQL text never changes, straight through the
    driver (SQLAlchemy compiles it once per `shape`; rows skip its per-value processing).

    PostgreSQL: `INSERT ... SELECT unnest(array1), unnest(array2), ...`, one array per column,
    sent in binary; `returning` (a column) answers the rows' values. SQLite: one prepared
    INSERT run by the driver's executemany; `returning` is not available there (writers are
    serialised, so callers know what they wrote). `finish` adds ON CONFLICT to either.
    All rows have the same keys. Pending ORM changes are flushed first.
    """
    if not rows:
        return []
    return _run_compiled(
        session,
        table,
        rows,
        shape,
        lambda dialect, columns: _compile(dialect, table, columns, finish, returning),
        returning=returning is not None,
    )


def bulk_update(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], *, key: str, shape: str
) -> None:
    """Set each row's own values on the row whose `key` column matches, in one statement
    whose SQL text never changes, straight through the driver as `bulk_write` does.

    PostgreSQL: `UPDATE ... FROM (SELECT unnest(array1), ...) AS v WHERE t.key = v.key`, one
    statement for the whole batch (an executemany UPDATE is one statement per row for the
    server, pipelined or not). SQLite: one prepared UPDATE run by the driver's executemany.
    All rows have the same keys, `key` among them. Pending ORM changes are flushed first.
    """
    if rows:
        _run_compiled(
            session,
            table,
            rows,
            f"update by {key}: {shape}",
            lambda dialect, columns: _compile_update(dialect, table, columns, key),
            returning=False,
        )


Compiler = Callable[[Dialect, tuple[str, ...]], tuple[str, tuple[str, ...]]]


def sqlite_total_changes(session: Session) -> int:
    """SQLite's count of rows this connection has written (a conflict skipped adds none),
    read from the driver: the count of an executemany INSERT, which cannot return rows."""
    driver = session.connection().connection.driver_connection
    return int(cast(Any, driver).total_changes)


def _run_compiled(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    shape: str,
    compile_for: Compiler,
    *,
    returning: bool,
) -> list[Any]:
    """Run the statement `compile_for` makes for the rows' columns, compiled once per shape,
    straight through the driver; pending ORM changes are flushed first."""
    session.flush()
    connection = session.connection()
    columns = tuple(rows[0])
    key = (connection.dialect.name, table.name, columns, shape)
    if key not in _compiled:
        _compiled[key] = compile_for(connection.dialect, columns)
    sql, order = _compiled[key]
    dbapi_error: type[Exception] = connection.dialect.loaded_dbapi.Error
    try:
        return _execute_raw(connection, table, rows, sql, order, returning=returning)
    except dbapi_error as exc:  # the same exception classes as through SQLAlchemy (IntegrityError)
        raise DBAPIError.instance(sql, None, exc, dbapi_error) from exc


def _execute_raw(
    connection: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    sql: str,
    order: tuple[str, ...],
    *,
    returning: bool,
) -> list[Any]:
    driver = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        arrays = {f"u_{name}": _pg_column(table, name, rows) for name in order}
        with driver.cursor() as cursor:  # type: ignore[union-attr]
            cursor.execute(sql, arrays)
            return cursor.fetchall() if returning else []
    driver.executemany(sql, _sqlite_params(table, order, rows))  # type: ignore[union-attr]
    return []


def _sqlite_params(
    table: Table, order: tuple[str, ...], rows: Sequence[Mapping[str, Any]]
) -> list[list[Any]]:
    """Rows as parameter lists in statement order; only times and JSON need converting."""
    values_of = operator.itemgetter(*order)
    conversions = [
        (position, _once_per_value(convert) if convert is _sqlite_time else convert)
        for position, name in enumerate(order)
        if (convert := _sqlite_converter(table.c[name].type)) is not None
    ]
    params = []
    for row in rows:
        values = list(values_of(row)) if len(order) > 1 else [values_of(row)]
        for position, convert in conversions:
            if values[position] is not None:
                values[position] = convert(values[position])
        params.append(values)
    return params


def _once_per_value(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`convert` run once per distinct value of a call: the rows of a batch mostly share their
    times (created_at, updated_at and the next attempt of 500 deliveries are one `now`)."""
    converted: dict[Any, Any] = {}

    def once(value: Any) -> Any:
        found = converted.get(value)
        if found is None:
            found = converted[value] = convert(value)
        return found

    return once


def _compile(
    dialect: Dialect, table: Table, columns: tuple[str, ...], finish: Finish, returning: Any
) -> tuple[str, tuple[str, ...]]:
    if dialect.name == "postgresql":
        source = select(*(_unnested(table, name) for name in columns))
        statement = finish(postgresql.insert(table).from_select(list(columns), source))
        if returning is not None:
            statement = statement.returning(returning)
        sql = str(statement.compile(dialect=dialect))
        return _BINARY_PLACEHOLDER.sub(r"%(\1)b", sql), columns  # arrays travel in binary
    compiled = finish(sqlite.insert(table)).compile(dialect=dialect, column_keys=list(columns))
    return str(compiled), tuple(compiled.positiontup or ())


def _compile_update(
    dialect: Dialect, table: Table, columns: tuple[str, ...], key: str
) -> tuple[str, tuple[str, ...]]:
    changed = [name for name in columns if name != key]
    if dialect.name == "postgresql":
        source = select(*(_unnested(table, name) for name in columns)).subquery("v")
        statement = (
            update(table)
            .where(table.c[key] == source.c[key])
            .values({name: source.c[name] for name in changed})
        )
        sql = str(statement.compile(dialect=dialect))
        return _BINARY_PLACEHOLDER.sub(r"%(\1)b", sql), columns
    # "b_" because SQLAlchemy keeps a column's own name for its automatic SET parameter
    statement = (
        update(table)
        .where(table.c[key] == bindparam(f"b_{key}"))
        .values({name: bindparam(f"b_{name}") for name in changed})
    )
    compiled = statement.compile(dialect=dialect)
    return str(compiled), tuple(name[2:] for name in compiled.positiontup or ())


def _unnested(table: Table, name: str) -> Any:
    """`unnest(:u_name) AS name`: one column of a batch sent as one array."""
    return func.unnest(bindparam(f"u_{name}", type_=ARRAY(table.c[name].type))).label(name)


def _pg_column(table: Table, name: str, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    if isinstance(table.c[name].type, JSON):
        return [None if row[name] is None else _json_dumps(row[name]) for row in rows]
    return [row[name] for row in rows]


def _sqlite_converter(column_type: Any) -> Callable[[Any], Any] | None:
    """How SQLAlchemy itself stores a non-NULL value on SQLite (tests read it back through it);
    None where the value goes as it is."""
    if isinstance(column_type, UTCDateTime):
        return _sqlite_time
    if isinstance(column_type, JSON):
        return _json_dumps
    return None


def _sqlite_time(value: datetime) -> str:
    """The text UTCDateTime stores: "2026-03-02 10:00:00.000000". Cut from the aware time's
    ISO form (its 26 characters before "+00:00"), a third quicker than a naive copy's."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(sep=" ", timespec="microseconds")[:26]
