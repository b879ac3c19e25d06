"""Every query of the messages domain. Deliveries are the queue: PostgreSQL claims them with
FOR UPDATE SKIP LOCKED; on SQLite the one write lock serialises claims, so the portable path
is the same query unlocked."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CursorResult,
    Row,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from regulars.db import (
    Base,
    UTCDateTime,
    bulk_update,
    bulk_write,
    chunks,
    finds_any,
    is_postgres,
    one_of,
    one_of_parameter,
    prepared,
    read_in_chunks,
    table_of,
)
from regulars.messages.models import (
    Broadcast,
    Category,
    Delivery,
    DeliveryStatus,
    InboxMessage,
    MessageChannel,
    MessagePause,
    Provider,
    PushSubscription,
    Suppression,
    Template,
    TemplateVersion,
)


def _insert(session: Session, model: type[Base]) -> Any:
    table = model.__table__
    assert isinstance(table, Table)
    return (postgresql.insert if is_postgres(session) else sqlite.insert)(table)


def _rowcount(result: object) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount


# --- templates ---


def get_template(session: Session, key: str, channel: MessageChannel) -> Template | None:
    return session.scalars(
        select(Template).where(Template.key == key, Template.channel == channel)
    ).one_or_none()


def templates_by_key(session: Session, key: str) -> list[Template]:
    return list(session.scalars(select(Template).where(Template.key == key)))


def list_templates(session: Session) -> list[Template]:
    return list(session.scalars(select(Template).order_by(Template.key, Template.channel)))


def current_templates(
    session: Session, keys: Collection[str]
) -> list[tuple[Template, TemplateVersion]]:
    """The templates of these keys, every channel, each with its current version: one read
    for a send's templates (it was one per key and one per channel)."""

    def build() -> Select[Template, TemplateVersion]:
        current = and_(
            TemplateVersion.template_id == Template.id,
            TemplateVersion.version == Template.version,
        )
        return (
            select(Template, TemplateVersion)
            .join(TemplateVersion, current)
            .where(one_of_parameter(session, Template.key, "ids"))
        )

    rows = read_in_chunks(session, ("messages.current_templates",), build, sorted(keys))
    return [(row.Template, row.TemplateVersion) for row in rows]


def get_version(session: Session, template_id: str, version: int) -> TemplateVersion | None:
    return session.get(TemplateVersion, (template_id, version))


def list_versions(session: Session, template_id: str) -> list[TemplateVersion]:
    return list(
        session.scalars(
            select(TemplateVersion)
            .where(TemplateVersion.template_id == template_id)
            .order_by(TemplateVersion.version)
        )
    )


def template_topics(session: Session, channel: MessageChannel) -> list[str]:
    query = select(Template.topic).where(Template.channel == channel, Template.topic != "")
    return sorted(set(session.scalars(query)))


def delete_template(session: Session, template: Template) -> None:
    session.delete(template)


# --- deliveries ---


def insert_deliveries(session: Session, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """Insert deliveries in one statement whose text never changes (db.bulk_write); a row
    whose idempotency key is taken is skipped. Answers the ids inserted."""
    if not rows:
        return set()
    table = table_of(Delivery)

    def finish(statement: Any) -> Any:
        return statement.on_conflict_do_nothing(index_elements=["idempotency_key"])

    if is_postgres(session):
        written = bulk_write(
            session, table, rows, shape="deliveries", finish=finish, returning=table.c.id
        )
        return {delivery_id for (delivery_id,) in written}
    # SQLite writers hold the database lock: the keys not taken now are the rows it writes.
    taken = delivery_ids_by_keys(
        session, [r["idempotency_key"] for r in rows if r["idempotency_key"]]
    )
    bulk_write(session, table, rows, shape="deliveries", finish=finish)
    return {row["id"] for row in rows if row["idempotency_key"] not in taken}


def get_delivery(session: Session, delivery_id: str) -> Delivery | None:
    return session.get(Delivery, delivery_id)


def get_deliveries(session: Session, ids: Collection[str]) -> dict[str, Delivery]:
    found: dict[str, Delivery] = {}
    for chunk in chunks(list(ids)):
        found.update(
            (d.id, d)
            for d in session.scalars(select(Delivery).where(one_of(session, Delivery.id, chunk)))
        )
    return found


def delivery_ids_by_keys(session: Session, keys: Collection[str]) -> dict[str, str]:
    deliveries = table_of(Delivery)

    def build() -> Select[Any]:
        return select(deliveries.c.idempotency_key, deliveries.c.id).where(
            one_of_parameter(session, deliveries.c.idempotency_key, "ids")
        )

    rows = read_in_chunks(session, ("messages.delivery_ids_by_keys",), build, list(keys))
    return {row.idempotency_key: row.id for row in rows if row.idempotency_key is not None}


def get_by_provider_message(session: Session, provider_message_id: str) -> Delivery | None:
    return session.scalars(
        select(Delivery).where(Delivery.provider_message_id == provider_message_id).limit(1)
    ).one_or_none()


def list_deliveries(
    session: Session,
    *,
    customer_id: str | None,
    channel: MessageChannel | None,
    status: DeliveryStatus | None,
    broadcast_id: str | None,
    provider: str | None,
    before_id: str | None,
    limit: int,
    template_key: str | None = None,
) -> list[Delivery]:
    """Newest first (ids are time-ordered ULIDs), keyset-paginated by id."""
    query = select(Delivery).order_by(Delivery.id.desc()).limit(limit)
    for column, value in (
        (Delivery.customer_id, customer_id),
        (Delivery.channel, channel),
        (Delivery.status, status),
        (Delivery.broadcast_id, broadcast_id),
        (Delivery.provider, provider),
        (Delivery.template_key, template_key),
    ):
        if value is not None:
            query = query.where(column == value)
    if before_id is not None:
        query = query.where(Delivery.id < before_id)
    return list(session.scalars(query))


_CLAIMABLE = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED, DeliveryStatus.SENDING)


def any_due(session: Session, *, now: datetime) -> bool:
    """Is a delivery due? A read, so a worker with none takes no write lock."""
    return finds_any(session, ("messages.any_due",), _any_due_query, {"now": now})


def _any_due_query() -> Select[Any]:
    deliveries = table_of(Delivery)  # Core: the worker asks every round, skip the ORM's work
    return select(deliveries.c.id).where(_due(bindparam("now", type_=UTCDateTime()))).limit(1)


def _due(now: Any) -> ColumnElement[bool]:
    deliveries = table_of(Delivery)
    return and_(deliveries.c.next_attempt_at <= now, deliveries.c.status.in_(_CLAIMABLE))


def claim_due(
    session: Session, *, now: datetime, limit: int, worker_id: str, locked_until: datetime
) -> list[Row[Any]]:
    """Claim up to `limit` due deliveries for this worker: their rows, every column. A
    claimed delivery's next_attempt_at is its lease end, so one whose worker died is due
    again afterwards."""
    claim = prepared(session, ("messages.claim_due",), lambda: _claim_statement(session))
    params = {"now": now, "limit": limit, "worker_id": worker_id, "locked_until": locked_until}
    return list(session.execute(claim, params))


def _claim_statement(session: Session) -> Any:
    """One statement: UPDATE ... WHERE id IN (SELECT ... SKIP LOCKED) RETURNING the rows; on
    Core, built once: the worker runs it every round."""
    deliveries = table_of(Delivery)
    now = bindparam("now", type_=UTCDateTime())
    locked_until = bindparam("locked_until", type_=UTCDateTime())
    due = (
        select(deliveries.c.id)
        .where(_due(now))
        .order_by(deliveries.c.next_attempt_at)
        .limit(bindparam("limit"))
    )
    if is_postgres(session):
        due = due.with_for_update(skip_locked=True)
    return (
        update(deliveries)
        .where(deliveries.c.id.in_(due.scalar_subquery()))
        .values(
            status=DeliveryStatus.SENDING,
            locked_by=bindparam("worker_id"),
            locked_until=locked_until,
            next_attempt_at=locked_until,
            attempts=deliveries.c.attempts + 1,
            updated_at=now,
        )
        .returning(*deliveries.c)
    )


def still_claimed(session: Session, delivery_ids: Collection[str], *, worker_id: str) -> set[str]:
    """The deliveries this worker still holds (a lease can be lost to another worker)."""
    deliveries = table_of(Delivery)

    def build() -> Select[Any]:
        query = select(deliveries.c.id).where(
            one_of_parameter(session, deliveries.c.id, "ids"),
            deliveries.c.status == DeliveryStatus.SENDING,
            deliveries.c.locked_by == bindparam("worker_id"),
        )
        return query.with_for_update() if is_postgres(session) else query

    key, ids = ("messages.still_claimed",), list(delivery_ids)
    rows = read_in_chunks(session, key, build, ids, params={"worker_id": worker_id})
    return {row.id for row in rows}


def save_outcomes(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write each claimed delivery's new state, by primary key: one statement whose text
    never changes, straight through the driver (db.bulk_update)."""
    bulk_update(session, table_of(Delivery), rows, key="id", shape="outcomes")


def recent_marketing(
    session: Session, customer_ids: Collection[str], *, since: datetime
) -> list[tuple[str, MessageChannel, datetime]]:
    """Marketing deliveries that count towards frequency caps (made since `since`, not
    refused by a policy)."""
    counted = [s for s in DeliveryStatus if s not in _NOT_COUNTED]
    found: list[tuple[str, MessageChannel, datetime]] = []
    for chunk in chunks(list(customer_ids)):
        rows = session.execute(
            select(Delivery.customer_id, Delivery.channel, Delivery.created_at).where(
                one_of(session, Delivery.customer_id, chunk),
                Delivery.created_at >= since,
                Delivery.category == Category.MARKETING,
                Delivery.status.in_(counted),
            )
        )
        found.extend((c, MessageChannel(ch), at) for c, ch, at in rows)
    return found


_NOT_COUNTED = (
    DeliveryStatus.SUPPRESSED,
    DeliveryStatus.EXPIRED,
    DeliveryStatus.CANCELLED,
    DeliveryStatus.FAILED,
)


def status_counts(session: Session, *, broadcast_id: str) -> dict[str, int]:
    rows = session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.broadcast_id == broadcast_id)
        .group_by(Delivery.status)
    )
    return {str(status): int(count) for status, count in rows}


def cancel_pending(session: Session, *, broadcast_id: str, now: datetime) -> int:
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.broadcast_id == broadcast_id,
            Delivery.status.in_((DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)),
        )
        .values(
            status=DeliveryStatus.CANCELLED,
            reason="broadcast cancelled",
            next_attempt_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


# --- suppressions ---


def suppressions_for(
    session: Session, channel: MessageChannel, addresses: Collection[str]
) -> dict[str, str]:
    suppressions = table_of(Suppression)

    def build() -> Select[Any]:
        return select(suppressions.c.address, suppressions.c.reason).where(
            suppressions.c.channel == bindparam("channel"),
            one_of_parameter(session, suppressions.c.address, "ids"),
        )

    key, listed = ("messages.suppressions_for",), list(addresses)
    rows = read_in_chunks(session, key, build, listed, params={"channel": channel})
    return {row.address: row.reason for row in rows}


def add_suppressions(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        session.execute(
            _insert(session, Suppression)
            .values(list(rows))
            .on_conflict_do_nothing(index_elements=["channel", "address"])
        )


def remove_suppression(session: Session, channel: MessageChannel, address: str) -> int:
    result = session.execute(
        delete(Suppression).where(Suppression.channel == channel, Suppression.address == address)
    )
    return _rowcount(result)


def list_suppressions(session: Session, *, limit: int) -> list[Suppression]:
    return list(
        session.scalars(select(Suppression).order_by(Suppression.created_at.desc()).limit(limit))
    )


# --- providers ---


def list_providers(session: Session) -> list[Provider]:
    query = select(Provider).order_by(Provider.channel, Provider.priority, Provider.name)
    return list(session.scalars(query))


def channel_providers(session: Session, channel: MessageChannel) -> list[Row[Any]]:
    """A channel's providers by priority, as plain rows: every delivery claim reads them,
    and an ORM query built anew was a third of a claim's time."""

    def build() -> Select[Any]:
        providers = table_of(Provider)
        return (
            select(providers)
            .where(providers.c.channel == bindparam("channel"))
            .order_by(providers.c.priority, providers.c.name)
        )

    query = prepared(session, ("messages.channel_providers",), build)
    return list(session.execute(query, {"channel": channel}))


def get_provider(session: Session, name: str) -> Provider | None:
    return session.get(Provider, name)


# --- push subscriptions ---


def push_subscriptions_of(
    session: Session, customer_ids: Collection[str]
) -> dict[str, list[PushSubscription]]:
    found: dict[str, list[PushSubscription]] = {}
    for chunk in chunks(list(customer_ids)):
        query = (
            select(PushSubscription)
            .where(one_of(session, PushSubscription.customer_id, chunk))
            .order_by(PushSubscription.created_at.desc())
        )
        for subscription in session.scalars(query):
            found.setdefault(subscription.customer_id, []).append(subscription)
    return found


def get_push_subscription(session: Session, endpoint: str) -> PushSubscription | None:
    return session.scalars(
        select(PushSubscription).where(PushSubscription.endpoint == endpoint)
    ).one_or_none()


def delete_push_subscriptions(session: Session, endpoints: Collection[str]) -> int:
    if not endpoints:
        return 0
    result = session.execute(
        delete(PushSubscription).where(PushSubscription.endpoint.in_(list(endpoints)))
    )
    return _rowcount(result)


# --- in-app inbox ---


def add_inbox_messages(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        session.execute(
            _insert(session, InboxMessage)
            .values(list(rows))
            .on_conflict_do_nothing(index_elements=["delivery_id"])
        )


def list_inbox(
    session: Session, customer_id: str, *, before_id: str | None, limit: int
) -> list[InboxMessage]:
    query = (
        select(InboxMessage)
        .where(InboxMessage.customer_id == customer_id)
        .order_by(InboxMessage.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(InboxMessage.id < before_id)
    return list(session.scalars(query))


def unread_count(session: Session, customer_id: str) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                InboxMessage.customer_id == customer_id, InboxMessage.read_at.is_(None)
            )
        )
        or 0
    )


def mark_read(
    session: Session, customer_id: str, *, message_ids: Collection[str] | None, at: datetime
) -> list[str]:
    """Mark the given messages (or all) read; answers the delivery ids newly read."""
    condition = and_(InboxMessage.customer_id == customer_id, InboxMessage.read_at.is_(None))
    if message_ids is not None:
        condition = and_(condition, InboxMessage.id.in_(list(message_ids)))
    delivery_ids = list(session.scalars(select(InboxMessage.delivery_id).where(condition)))
    session.execute(
        update(InboxMessage)
        .where(condition)
        .values(read_at=at)
        .execution_options(synchronize_session=False)
    )
    return delivery_ids


# --- pauses ---


def pauses_of(session: Session, customer_ids: Collection[str]) -> dict[str, datetime]:
    pauses = table_of(MessagePause)

    def build() -> Select[Any]:
        return select(pauses.c.customer_id, pauses.c.until).where(
            one_of_parameter(session, pauses.c.customer_id, "ids")
        )

    rows = read_in_chunks(session, ("messages.pauses_of",), build, list(customer_ids))
    return {row.customer_id: row.until for row in rows}


def set_pause(session: Session, customer_id: str, until: datetime | None) -> None:
    session.execute(delete(MessagePause).where(MessagePause.customer_id == customer_id))
    if until is not None:
        session.add(MessagePause(customer_id=customer_id, until=until))


# --- broadcasts ---


def get_broadcast(session: Session, broadcast_id: str, *, lock: bool = False) -> Broadcast | None:
    if lock and is_postgres(session):
        return session.get(Broadcast, broadcast_id, with_for_update=True)
    return session.get(Broadcast, broadcast_id)


def cancelled_broadcasts(session: Session, broadcast_ids: Collection[str | None]) -> list[str]:
    wanted = [b for b in broadcast_ids if b is not None]
    if not wanted:
        return []
    query = select(Broadcast.id).where(
        Broadcast.id.in_(wanted), Broadcast.cancelled_at.is_not(None)
    )
    return list(session.scalars(query))


def list_broadcasts(session: Session, *, limit: int) -> list[Broadcast]:
    return list(session.scalars(select(Broadcast).order_by(Broadcast.id.desc()).limit(limit)))


# --- merges ---


def move_customer_rows(session: Session, *, merged_id: str, survivor_id: str) -> None:
    """Hand a merged-away profile's deliveries, push subscriptions and inbox to the survivor
    (a pause moves only when the survivor has none)."""
    for model in (Delivery, PushSubscription, InboxMessage):
        session.execute(
            update(model)
            .where(model.customer_id == merged_id)
            .values(customer_id=survivor_id)
            .execution_options(synchronize_session=False)
        )
    survivor_paused = session.get(MessagePause, survivor_id) is not None
    if survivor_paused:
        session.execute(delete(MessagePause).where(MessagePause.customer_id == merged_id))
    else:
        session.execute(
            update(MessagePause)
            .where(MessagePause.customer_id == merged_id)
            .values(customer_id=survivor_id)
            .execution_options(synchronize_session=False)
        )
