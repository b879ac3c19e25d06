"""The dashboard search's queries: prefix ranges the search indexes serve, in bytewise order
(customers.search decides which ranges a typed text means)."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import and_, func, literal, literal_column, or_, select
from sqlalchemy.orm import Session

from regulars.customers.models import Customer
from regulars.customers.repository import get_by_external_id
from regulars.db import is_postgres

SearchField = Literal["first_name", "last_name", "email", "phone"]


def lowered(session: Session, value: str) -> str:
    """`value` lowercased as the database lowercases names (SQLite: ASCII letters only)."""
    return str(session.scalar(select(func.lower(literal(value)))))


def _search_key(session: Session, field: SearchField) -> tuple[Any, Any, Any]:
    """(what is compared, its value as selected, the ORDER BY term) of a search field."""
    column = getattr(Customer, field)
    postgres = is_postgres(session)
    if field in ("email", "phone"):
        order = literal_column(f"customers.{field} USING ~<~") if postgres else column
        return column, column, order
    if postgres:
        key = func.lower(column)
        return key, key, literal_column(f"lower(customers.{field}) USING ~<~")
    return column.collate("NOCASE"), func.lower(column), column.collate("NOCASE")


def _compare(session: Session, expr: Any, operator: str, value: str) -> Any:
    """expr <operator> value in bytewise order (PostgreSQL's pattern operators)."""
    if is_postgres(session) and operator != "=":
        return expr.op(f"~{operator}~")(value)
    return expr.op(operator)(value)


def search_customers(
    session: Session,
    field: SearchField,
    *,
    low: str,
    high: str,
    after: tuple[str, str] | None,
    limit: int,
    also: tuple[SearchField, str, str] | None = None,
    not_: tuple[SearchField, str, str] | None = None,
) -> list[tuple[str, Customer]]:
    """(key, customer) with `low <= field < high`, by (key, id) after `after`; `also` adds
    another prefix range that must hold, `not_` one that must not."""
    compared, selected, order = _search_key(session, field)
    conditions = [
        _compare(session, compared, ">=", max(low, after[0]) if after else low),
        _compare(session, compared, "<", high),
    ]
    if after is not None:
        key, customer_id = after
        conditions.append(
            or_(
                _compare(session, compared, ">", key),
                and_(_compare(session, compared, "=", key), Customer.id > customer_id),
            )
        )
    for extra, wanted in ((also, True), (not_, False)):
        if extra is not None:
            other = _search_key(session, extra[0])[0]
            inside = and_(
                _compare(session, other, ">=", extra[1]), _compare(session, other, "<", extra[2])
            )
            conditions.append(inside if wanted else or_(other.is_(None), ~inside))
    statement = (
        select(selected, Customer).where(*conditions).order_by(order, Customer.id).limit(limit)
    )
    return [(str(key), customer) for key, customer in session.execute(statement)]


def get_by_reference(session: Session, reference: str) -> list[Customer]:
    """The customers whose id or external id is exactly `reference` (two unique lookups)."""
    found = [session.get(Customer, reference.upper()), get_by_external_id(session, reference)]
    return [c for c in dict.fromkeys(found) if c is not None]
