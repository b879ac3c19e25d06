"""The database's plan for the statements a piece of work runs, on either database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from regulars.db import is_postgres, session_scope


def plan_of(work: Callable[[Session], object]) -> str:
    """EXPLAIN (PostgreSQL) or EXPLAIN QUERY PLAN (SQLite) of each statement `work` runs
    through SQLAlchemy, one line per plan row; the statements themselves still run, in a
    transaction rolled back at the end."""
    with session_scope() as session:
        prefix = "EXPLAIN " if is_postgres(session) else "EXPLAIN QUERY PLAN "
        plans: list[str] = []
        connection = session.connection()

        def explain(_c: Connection, cursor: Any, statement: str, params: Any, *_: Any) -> Any:
            cursor.execute(prefix + statement, params)
            plans.extend(" ".join(str(v) for v in row) for row in cursor.fetchall())
            return statement, params

        event.listen(connection, "before_cursor_execute", explain, retval=True)
        try:
            work(session)
        finally:
            event.remove(connection, "before_cursor_execute", explain)
        session.rollback()
    return "\n".join(plans)
