"""Every query of the customers domain. The ingestion path is set-based: a batch of messages is a
handful of statements, whatever its size."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Row,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql import CompoundSelect, Select

from regulars.customers.models import (
    Consent,
    ConsentChange,
    Customer,
    CustomerEventCount,
    CustomerFacts,
    CustomerMerge,
    Erasure,
    Event,
    EventType,
    Group,
    GroupMembership,
    Identity,
    IdentityKind,
)
from regulars.customers.rules import FACT_FIELDS, PROFILE_STATE_FIELDS, Facts, ProfileState
from regulars.customers.schemas import CustomerQuery
from regulars.db import (
    bulk_update,
    bulk_write,
    chunks,
    is_postgres,
    one_of,
    one_of_parameter,
    prepared,
    read_in_chunks,
    table_of,
    unnested_parameter,
)

IdentityKey = tuple[IdentityKind, str]


def _insert(session: Session, table: Any) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT on both SQLite and PostgreSQL."""
    dialect = postgresql if is_postgres(session) else sqlite
    return dialect.insert(table)


# --- lookups ---


def get(session: Session, customer_id: str) -> Customer | None:
    return session.get(Customer, customer_id)


def get_many(session: Session, customer_ids: Collection[str]) -> dict[str, Customer]:
    found: dict[str, Customer] = {}
    for chunk in chunks(sorted(customer_ids)):
        for customer in session.scalars(
            select(Customer).where(one_of(session, Customer.id, chunk))
        ):
            found[customer.id] = customer
    return found


def time_zones(session: Session, customer_ids: Collection[str]) -> dict[str, str | None]:
    customers = table_of(Customer)

    def build() -> Select[Any]:
        return select(customers.c.id, customers.c.timezone).where(
            one_of_parameter(session, customers.c.id, "ids")
        )

    rows = read_in_chunks(session, ("customers.time_zones",), build, sorted(customer_ids))
    return {row.id: row.timezone for row in rows}


def survivor_of(session: Session, merged_id: str) -> str | None:
    return session.scalar(
        select(CustomerMerge.survivor_id).where(CustomerMerge.merged_id == merged_id)
    )


def load_identities(
    session: Session, keys: Collection[IdentityKey]
) -> dict[IdentityKey, tuple[str, str | None]]:
    """The customer (id, external id) each known identifier belongs to; unknown ones are absent.
    One query for the whole batch, built once: its text does not depend on the batch."""
    users = sorted({value for kind, value in keys if kind is IdentityKind.USER_ID})
    anonymous = sorted({value for kind, value in keys if kind is IdentityKind.ANONYMOUS_ID})
    query = prepared(session, ("customers.identities",), lambda: _identities_query(session))
    found: dict[IdentityKey, tuple[str, str | None]] = {}
    for user_chunk, anonymous_chunk in itertools.zip_longest(
        chunks(users), chunks(anonymous), fillvalue=()
    ):
        values = {"users": list(user_chunk), "anonymous": list(anonymous_chunk)}
        for kind, value, owner, external in session.execute(query, values):
            found[(IdentityKind(kind), value)] = (owner, external)
    return found


def _identities_query(session: Session) -> CompoundSelect[Any]:
    """One select per kind, joined by UNION ALL: each is one index search per value. Written
    as one select with an OR, SQLite gathered the row ids of both searches first and then read
    the rows (a third slower)."""
    of_kind = _identities_of_kind_postgresql if is_postgres(session) else _identities_of_kind
    return union_all(
        of_kind(session, IdentityKind.USER_ID, "users"),
        of_kind(session, IdentityKind.ANONYMOUS_ID, "anonymous"),
    )


def _identities_of_kind(session: Session, kind: IdentityKind, values: str) -> Select[Any]:
    """(kind, value, customer id, external id) of the identifiers in the parameter `values`."""
    identities, customers = table_of(Identity), table_of(Customer)
    columns = (identities.c.kind, identities.c.value, identities.c.customer_id)
    return (
        select(*columns, customers.c.external_id)
        .join(customers, customers.c.id == identities.c.customer_id)
        .where(identities.c.kind == kind, one_of_parameter(session, identities.c.value, values))
    )


def _identities_of_kind_postgresql(
    _session: Session, kind: IdentityKind, values: str
) -> Select[Any]:
    """The same on PostgreSQL, written so that its plan cannot depend on statistics: for each
    value given, one search of the primary key (kind, value), as a LATERAL subquery that
    LIMIT 1 keeps from being flattened into the join. As `value = ANY(:values)`, a table that
    had not been analyzed since it grew (autovacuum lags a fast-growing store by a minute, or
    is off) was read by its leading column alone, every row of a kind: 28 ms instead of
    0.4 ms for 100 identifiers among 180,000, two thirds of the database's time under ingest
    (docs/benchmarks.md, Ingestion)."""
    identities, customers = table_of(Identity), table_of(Customer)
    given = unnested_parameter(values, String()).render_derived(f"given_{values}")
    found = (
        select(identities.c.value, identities.c.customer_id, customers.c.external_id)
        .join(customers, customers.c.id == identities.c.customer_id)
        .where(identities.c.kind == kind, identities.c.value == given.c.value)
        .limit(1)
        .lateral(f"found_{values}")
    )
    kind_column = literal(kind.value, String()).label("kind")
    return select(kind_column, found.c.value, found.c.customer_id, found.c.external_id).select_from(
        given.join(found, true())
    )


# --- writes of the ingestion path ---


def add_customers(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """New profiles; their facts row comes with their first event (`add_facts`)."""
    bulk_write(session, table_of(Customer), rows, shape="customers")


def add_identities(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    bulk_write(session, table_of(Identity), rows, shape="identities")


def profile_states(session: Session, customer_ids: Collection[str]) -> dict[str, ProfileState]:
    """What identify calls change, read for update (rows locked in id order on PostgreSQL)."""
    columns = [table_of(Customer).c[name] for name in PROFILE_STATE_FIELDS]
    found: dict[str, ProfileState] = {}
    for chunk in chunks(sorted(customer_ids)):
        query = (
            select(Customer.id, *columns)
            .where(one_of(session, Customer.id, chunk))
            .order_by(Customer.id)
        )
        if is_postgres(session):
            query = query.with_for_update()
        for row in session.execute(query):
            found[row[0]] = ProfileState(*row[1:])
    return found


def save_profile_changes(
    session: Session, changes: Mapping[str, Mapping[str, Any]], *, updated_at: datetime
) -> None:
    """Write what identify calls changed on each profile, and `updated_at`: one statement per
    set of changed fields. A column left out of the SET is an index left alone: SQLite
    rewrites the entry of every index whose column an UPDATE sets, same value or not, and
    the profile's seven indexes were a fifth of the pages an ingest batch wrote."""
    by_fields: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for customer_id, fields in changes.items():
        names = tuple(sorted(fields))  # one statement per set of columns, in one order
        row = {"id": customer_id, "updated_at": updated_at} | {n: fields[n] for n in names}
        by_fields.setdefault(names, []).append(row)
    for rows in by_fields.values():
        bulk_update(session, table_of(Customer), rows, key="id", shape="profile")


def set_external_id(session: Session, customer_id: str, external_id: str) -> None:
    session.execute(
        update(Customer).where(Customer.id == customer_id).values(external_id=external_id)
    )


def insert_events(
    session: Session, rows: Sequence[Mapping[str, Any]], *, new_ids: bool = False
) -> set[str]:
    """Insert what is new; answer the message ids actually inserted. One stored before (or, on
    PostgreSQL, by a concurrent batch) is skipped by the unique constraint, not an error.
    `new_ids`: every message id was made just now, so none is stored: SQLite skips the look."""
    if not rows:
        return set()
    table = table_of(Event)

    def finish(statement: Any) -> Any:
        return statement.on_conflict_do_nothing(index_elements=["source", "message_id"])

    if is_postgres(session):
        written = bulk_write(
            session, table, rows, shape="events", finish=finish, returning=table.c.message_id
        )
        return {message_id for (message_id,) in written}
    # SQLite writers hold the database lock: what is not stored yet is what this one stores.
    stored = set() if new_ids else _stored_message_ids(session, rows)
    bulk_write(session, table, rows, shape="events", finish=finish)
    return {row["message_id"] for row in rows} - stored


def _stored_message_ids(session: Session, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    found: set[str] = set()
    by_source: dict[str, list[str]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row["message_id"])
    query = prepared(session, ("customers.stored_message_ids",), lambda: _stored_query(session))
    for source, message_ids in by_source.items():
        for chunk in chunks(message_ids):
            found.update(session.scalars(query, {"source": source, "ids": list(chunk)}))
    return found


def _stored_query(session: Session) -> Select[Any]:
    events = table_of(Event)
    return select(events.c.message_id).where(
        events.c.source == bindparam("source"),
        one_of_parameter(session, events.c.message_id, "ids"),
    )


def lock_facts(session: Session, customer_ids: Collection[str]) -> dict[str, Facts]:
    """Read facts for update: on PostgreSQL rows are locked (SQLite's writer lock covers it)."""
    columns = [getattr(CustomerFacts, name) for name in FACT_FIELDS]
    found: dict[str, Facts] = {}
    for chunk in chunks(sorted(customer_ids)):
        query = (
            select(CustomerFacts.customer_id, *columns)
            .where(one_of(session, CustomerFacts.customer_id, chunk))
            .order_by(CustomerFacts.customer_id)  # one lock order for every writer: no deadlocks
        )
        if is_postgres(session):
            query = query.with_for_update()
        for row in session.execute(query):
            found[row[0]] = Facts(*row[1:])
    return found


_COUNTERS = (
    "events_count",
    "orders_count",
    "revenue_total_cents",
    "refunds_count",
    "refunded_total_cents",
)
_EARLIEST = ("first_order_at", "first_seen_at")
_LATEST = ("last_order_at", "last_seen_at")


def _earliest(session: Session, current: Any, new: Any) -> Any:
    """The earlier of two possibly-NULL times (PostgreSQL's LEAST ignores NULL, SQLite's min
    does not)."""
    if is_postgres(session):
        return func.least(current, new)
    return func.min(func.coalesce(current, new), func.coalesce(new, current))


def _latest(session: Session, current: Any, new: Any) -> Any:
    if is_postgres(session):
        return func.greatest(current, new)
    return func.max(func.coalesce(current, new), func.coalesce(new, current))


def add_facts(session: Session, deltas: Mapping[str, Facts]) -> None:
    """Add each customer's delta to their facts in one upsert, without reading them first:
    counters add up, first/last times keep the earliest/latest."""
    if not deltas:
        return
    table = table_of(CustomerFacts)

    def finish(statement: Any) -> Any:
        new = statement.excluded
        changes = {name: table.c[name] + new[name] for name in _COUNTERS}
        changes |= {n: _earliest(session, table.c[n], new[n]) for n in _EARLIEST}
        changes |= {n: _latest(session, table.c[n], new[n]) for n in _LATEST}
        return statement.on_conflict_do_update(index_elements=["customer_id"], set_=changes)

    rows = [
        {"customer_id": customer_id, **{name: getattr(f, name) for name in FACT_FIELDS}}
        for customer_id, f in sorted(deltas.items())
    ]
    bulk_write(session, table, rows, shape="facts-add", finish=finish)


def add_event_counts(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Upsert (customer_id, event_name, count, last_at): counts add up, last_at keeps the max."""
    if not rows:
        return
    table = table_of(CustomerEventCount)

    def finish(statement: Any) -> Any:
        new = statement.excluded
        return statement.on_conflict_do_update(
            index_elements=["customer_id", "event_name"],
            set_={
                "count": table.c.count + new.count,
                "last_at": _latest(session, table.c.last_at, new.last_at),
            },
        )

    ordered = sorted(rows, key=lambda r: (r["customer_id"], r["event_name"]))
    bulk_write(session, table, ordered, shape="event-counts-add", finish=finish)


# --- consents ---


def consents_of(session: Session, customer_ids: Collection[str]) -> list[Consent]:
    return list(
        session.scalars(select(Consent).where(one_of(session, Consent.customer_id, customer_ids)))
    )


def consent_statuses(
    session: Session, customer_ids: Collection[str]
) -> list[tuple[str, str, str, str]]:
    """(customer id, channel, topic, status) rows: the cheap read for policy checks."""
    table = table_of(Consent)

    def build() -> Select[Any]:
        columns = (table.c.customer_id, table.c.channel, table.c.topic, table.c.status)
        return select(*columns).where(one_of_parameter(session, table.c.customer_id, "ids"))

    rows = read_in_chunks(session, ("customers.consent_statuses",), build, sorted(customer_ids))
    return [(c, channel, topic, status) for c, channel, topic, status in map(tuple, rows)]


def add_consent_changes(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        session.execute(table_of(ConsentChange).insert(), list(rows))


# --- groups ---


def get_group_by_key(session: Session, group_key: str) -> Group | None:
    return session.scalar(select(Group).where(Group.group_key == group_key))


def add_membership(session: Session, *, group_id: str, customer_id: str, at: datetime) -> None:
    statement = (
        _insert(session, table_of(GroupMembership))
        .values(group_id=group_id, customer_id=customer_id, joined_at=at)
        .on_conflict_do_nothing(index_elements=["group_id", "customer_id"])
    )
    session.execute(statement)


# --- merges ---


def move_rows(session: Session, *, merged_id: str, survivor_id: str) -> None:
    """Re-point the merged profile's timeline, identities and consent history at the survivor."""
    for model in (Event, Identity, ConsentChange):
        session.execute(
            update(model).where(model.customer_id == merged_id).values(customer_id=survivor_id)
        )


def move_memberships(session: Session, *, merged_id: str, survivor_id: str, at: datetime) -> None:
    group_ids = session.scalars(
        select(GroupMembership.group_id).where(GroupMembership.customer_id == merged_id)
    ).all()
    for group_id in group_ids:
        add_membership(session, group_id=group_id, customer_id=survivor_id, at=at)


def record_merge(
    session: Session, *, merged_id: str, survivor_id: str, reason: str, at: datetime
) -> None:
    """Earlier merges into the merged profile now point at the survivor too: one hop, forever."""
    session.execute(
        update(CustomerMerge)
        .where(CustomerMerge.survivor_id == merged_id)
        .values(survivor_id=survivor_id)
    )
    session.add(
        CustomerMerge(merged_id=merged_id, survivor_id=survivor_id, reason=reason, merged_at=at)
    )


def identities_of(session: Session, customer_ids: Collection[str]) -> list[Identity]:
    return list(
        session.scalars(select(Identity).where(one_of(session, Identity.customer_id, customer_ids)))
    )


# --- reads, export, erase ---


def _trait_text(session: Session, path: Sequence[str]) -> Any:
    """A trait (nested keys as a path) read as text: strings as they are, numbers in JSON
    notation, booleans as true/false, on SQLite as on PostgreSQL."""
    if is_postgres(session):
        return Customer.traits[tuple(path)].as_string()
    json_path = "$" + "".join(f'."{key}"' for key in path)
    kind = func.json_type(Customer.traits, json_path)
    return case(
        (kind == "true", literal("true")),
        (kind == "false", literal("false")),
        else_=cast(func.json_extract(Customer.traits, json_path), String),
    )


def list_customers(
    session: Session, query: CustomerQuery, *, after_id: str | None, limit: int
) -> list[Customer]:
    """Customers matching every filter, newest first (ids sort by creation), keyset on id."""
    statement = select(Customer).order_by(Customer.id.desc()).limit(limit)
    conditions: list[Any] = []
    for column, value in (
        (Customer.email, query.email),
        (Customer.phone, query.phone),
        (Customer.external_id, query.external_id),
    ):
        if value is not None:
            conditions.append(column == value)
    conditions += [_trait_text(session, f.path) == f.value for f in query.traits]
    if query.created_after is not None:
        conditions.append(Customer.created_at >= query.created_after)
    if query.created_before is not None:
        conditions.append(Customer.created_at < query.created_before)
    if query.last_seen_after is not None or query.last_seen_before is not None:
        statement = statement.join(CustomerFacts, CustomerFacts.customer_id == Customer.id)
        if query.last_seen_after is not None:
            conditions.append(CustomerFacts.last_seen_at >= query.last_seen_after)
        if query.last_seen_before is not None:
            conditions.append(CustomerFacts.last_seen_at < query.last_seen_before)
    if after_id is not None:
        conditions.append(Customer.id < after_id)
    return list(session.scalars(statement.where(*conditions)))


def get_by_external_id(session: Session, external_id: str) -> Customer | None:
    return session.scalar(select(Customer).where(Customer.external_id == external_id))


def list_by_email(session: Session, email: str) -> list[Customer]:
    return list(
        session.scalars(select(Customer).where(Customer.email == email).order_by(Customer.id))
    )


def profile_rows(session: Session, customer_ids: Collection[str]) -> dict[str, Row[Any]]:
    """Profiles as plain rows (a column per attribute), by id: what a read for display or
    for messages needs, without building ORM objects (the messages worker reads hundreds per
    batch)."""
    return _rows_by_customer(session, table_of(Customer), "id", customer_ids)


def facts_rows(session: Session, customer_ids: Collection[str]) -> dict[str, Row[Any]]:
    """Facts as plain rows, by customer id."""
    return _rows_by_customer(session, table_of(CustomerFacts), "customer_id", customer_ids)


def event_count_rows(session: Session, customer_ids: Collection[str]) -> list[tuple[str, str, int]]:
    """(customer_id, event_name, count), by customer then event name."""
    table = table_of(CustomerEventCount)

    def build() -> Select[Any]:
        return (
            select(table.c.customer_id, table.c.event_name, table.c["count"])
            .where(one_of_parameter(session, table.c.customer_id, "ids"))
            .order_by(table.c.customer_id, table.c.event_name)
        )

    rows = read_in_chunks(session, ("customers.event_counts",), build, sorted(customer_ids))
    return [(str(c), str(name), int(n)) for c, name, n in map(tuple, rows)]


def consent_rows(session: Session, customer_ids: Collection[str]) -> list[Row[Any]]:
    table = table_of(Consent)

    def build() -> Select[Any]:
        return select(table).where(one_of_parameter(session, table.c.customer_id, "ids"))

    return read_in_chunks(session, ("customers.consents",), build, sorted(customer_ids))


def _rows_by_customer(
    session: Session, table: Table, key: str, customer_ids: Collection[str]
) -> dict[str, Row[Any]]:
    def build() -> Select[Any]:
        return select(table).where(one_of_parameter(session, table.c[key], "ids"))

    rows = read_in_chunks(session, ("customers.rows", table.name, key), build, sorted(customer_ids))
    return {row._mapping[key]: row for row in rows}


def event_counts_for(session: Session, customer_ids: Collection[str]) -> list[CustomerEventCount]:
    found: list[CustomerEventCount] = []
    for chunk in chunks(sorted(customer_ids)):
        found += session.scalars(
            select(CustomerEventCount)
            .where(one_of(session, CustomerEventCount.customer_id, chunk))
            .order_by(CustomerEventCount.customer_id, CustomerEventCount.event_name)
        )
    return found


def list_events(
    session: Session,
    customer_id: str,
    *,
    type: EventType | None,
    name: str | None,
    before: tuple[datetime, int] | None,
    limit: int,
) -> list[Event]:
    """A customer's events, newest first; keyset on (timestamp, id) via the timeline index."""
    statement = (
        select(Event)
        .where(Event.customer_id == customer_id)
        .order_by(Event.timestamp.desc(), Event.id.desc())
        .limit(limit)
    )
    if type is not None:
        statement = statement.where(Event.type == type)
    if name is not None:
        statement = statement.where(Event.name == name)
    if before is not None:
        at, event_id = before
        statement = statement.where(
            or_(Event.timestamp < at, and_(Event.timestamp == at, Event.id < event_id))
        )
    return list(session.scalars(statement))


def all_events(session: Session, customer_id: str) -> list[Event]:
    return list(
        session.scalars(
            select(Event)
            .where(Event.customer_id == customer_id)
            .order_by(Event.timestamp, Event.id)
        )
    )


def consent_history(session: Session, customer_id: str) -> list[ConsentChange]:
    return list(
        session.scalars(
            select(ConsentChange)
            .where(ConsentChange.customer_id == customer_id)
            .order_by(ConsentChange.changed_at, ConsentChange.id)
        )
    )


def memberships_of(session: Session, customer_id: str) -> list[tuple[GroupMembership, Group]]:
    rows = session.execute(
        select(GroupMembership, Group)
        .join(Group, Group.id == GroupMembership.group_id)
        .where(GroupMembership.customer_id == customer_id)
        .order_by(GroupMembership.joined_at, Group.id)
    )
    return [(membership, group) for membership, group in rows]


def merges_into(session: Session, customer_id: str) -> list[CustomerMerge]:
    return list(
        session.scalars(
            select(CustomerMerge)
            .where(CustomerMerge.survivor_id == customer_id)
            .order_by(CustomerMerge.merged_at, CustomerMerge.merged_id)
        )
    )


# Children first, the profile last; each count is the rows one DELETE removed.
_ERASED: tuple[tuple[str, Any], ...] = (
    ("events", Event.customer_id),
    ("customer_event_counts", CustomerEventCount.customer_id),
    ("customer_facts", CustomerFacts.customer_id),
    ("consents", Consent.customer_id),
    ("consent_changes", ConsentChange.customer_id),
    ("group_memberships", GroupMembership.customer_id),
    ("customer_identities", Identity.customer_id),
    ("customer_merges", CustomerMerge.survivor_id),
    ("customers", Customer.id),
)


def erase_rows(session: Session, customer_id: str) -> dict[str, int]:
    """Delete every row about one customer; answer how many rows each table lost."""
    counts: dict[str, int] = {}
    for table_name, column in _ERASED:
        result = session.execute(delete(column.class_).where(column == customer_id))
        counts[table_name] = int(getattr(result, "rowcount", 0) or 0)
    return counts


def add_erasure(session: Session, erasure: Erasure) -> None:
    session.add(erasure)
    session.flush()


# --- RFM scores ---

RFM_SCORES = 5


def _quintile(order: Any) -> Any:
    """1 + floor(5 x customers ranked strictly below / customers ranked): equal values share
    a rank, hence a score, and nothing depends on the customers' ids."""
    return 1 + (func.rank().over(order_by=order) - 1) * RFM_SCORES // func.count().over()


RfmScores = tuple[str, int | None, int | None, int | None]  # customer id, R, F, M (or NULLs)


def rfm_score_changes(session: Session) -> list[RfmScores]:
    """The fresh scores of every customer whose stored ones differ, in customer id order,
    read without locking anything (`write_rfm_scores` stores them a chunk at a time)."""
    rows = session.execute(_rfm_changes(table_of(CustomerFacts)))
    return [(str(row[0]), row[1], row[2], row[3]) for row in rows]


def write_rfm_scores(session: Session, scores: Sequence[RfmScores]) -> None:
    """Store these customers' scores; on PostgreSQL their facts rows are locked in customer
    id order first, the order ingestion locks them in, so the two never deadlock."""
    ordered = sorted(scores)
    lock_facts(session, [customer_id for customer_id, *_ in ordered])
    table = table_of(CustomerFacts)
    rows = [
        {"customer_id": c, "rfm_recency": r, "rfm_frequency": f, "rfm_monetary": m}
        for c, r, f, m in ordered
    ]
    bulk_update(session, table, rows, key="customer_id", shape="rfm scores")


def _rfm_changes(table: Table) -> Select[Any]:
    """(customer_id, recency, frequency, monetary) of each customer whose stored scores
    differ from the fresh ones (NULL for customers without orders), in id order."""
    scored = table.alias("scored")
    scores = (
        select(
            scored.c.customer_id,
            _quintile(scored.c.last_order_at.asc().nulls_first()).label("recency"),
            _quintile(scored.c.orders_count).label("frequency"),
            _quintile(scored.c.revenue_total_cents).label("monetary"),
        )
        .where(scored.c.orders_count >= 1)
        .subquery("scores")
    )
    facts = table.alias("facts")
    return (
        select(facts.c.customer_id, scores.c.recency, scores.c.frequency, scores.c.monetary)
        .outerjoin(scores, scores.c.customer_id == facts.c.customer_id)
        .where(
            or_(
                facts.c.rfm_recency.is_distinct_from(scores.c.recency),
                facts.c.rfm_frequency.is_distinct_from(scores.c.frequency),
                facts.c.rfm_monetary.is_distinct_from(scores.c.monetary),
            )
        )
        .order_by(facts.c.customer_id)
    )


def get_id_by_phone(session: Session, phone: str) -> str | None:
    return session.scalars(
        select(Customer.id)
        .where(Customer.phone == phone)
        .order_by(Customer.updated_at.desc())
        .limit(1)
    ).one_or_none()


def events_named(
    session: Session, customer_ids: Sequence[str], name: str, since: datetime
) -> list[Event]:
    found: list[Event] = []
    for chunk in chunks(list(customer_ids)):
        found.extend(
            session.scalars(
                select(Event).where(
                    Event.name == name,
                    one_of(session, Event.customer_id, chunk),
                    Event.timestamp >= since,
                )
            )
        )
    return found
