"""Segment storage: definitions, current members, membership history, daily counts.

The rule compiler (rule tree to SQL) lives beside it in `compiler.py`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    null,
    select,
    text,
    tuple_,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql import CompoundSelect, Delete, Select, Update

from regulars.customers.models import (
    Consent,
    Customer,
    CustomerFacts,
    Event,
    Group,
    GroupMembership,
)
from regulars.db import (
    JSONType,
    UTCDateTime,
    bulk_write,
    chunks,
    one_of,
    one_of_parameter,
    prepared,
    read_together,
    table_of,
)
from regulars.segments import engine
from regulars.segments.models import (
    Segment,
    SegmentCount,
    SegmentCountChange,
    SegmentMember,
    SegmentMembershipSpan,
)
from regulars.segments.rules import PROFILE_TEXT_FIELDS, PROFILE_TIME_FIELDS, EventRead

# --- definitions ---


def get(session: Session, segment_id: str) -> Segment | None:
    return session.get(Segment, segment_id)


def get_by_key(session: Session, key: str) -> Segment | None:
    return session.scalars(select(Segment).where(Segment.key == key)).one_or_none()


def add(session: Session, segment: Segment) -> None:
    session.add(segment)
    session.flush()


def remove(session: Session, segment: Segment) -> None:
    session.delete(segment)
    session.flush()


def list_segments(session: Session, *, after_key: str | None, limit: int) -> list[Segment]:
    query = select(Segment).order_by(Segment.key).limit(limit)
    if after_key is not None:
        query = query.where(Segment.key > after_key)
    return list(session.scalars(query))


def all_segments(session: Session) -> list[Segment]:
    return list(session.scalars(select(Segment).order_by(Segment.key)))


Version = tuple[tuple[str, str], ...]


class SegmentsChanged(Exception):
    """The segments are no longer those of the version a read expected: a segment was
    created, edited or deleted since (by another process, or earlier in this one)."""


def version(session: Session) -> Version:
    """Changes whenever a segment is created, edited or deleted: the live index's cache key
    (ids with their update times, so a delete and a create in the same instant differ too)."""
    return _as_version(read_together(session, [(_VERSION, {})])[0])


def check_version(session: Session, expected: Version) -> None:
    if version(session) != expected:
        raise SegmentsChanged


def _as_version(rows: Iterable[tuple[Any, ...]]) -> Version:
    return tuple((str(segment_id), str(updated_at)) for segment_id, updated_at in rows)


_SEGMENTS = table_of(Segment)
# Built once and read as stored (no time parsed): it runs before every live re-evaluation.
_VERSION = select(_SEGMENTS.c.id, type_coerce(_SEGMENTS.c.updated_at, String)).order_by(
    _SEGMENTS.c.id
)


def key_ids(session: Session) -> dict[str, str]:
    return {str(key): str(id_) for key, id_ in session.execute(select(Segment.key, Segment.id))}


# --- members ---


def member_ids(session: Session, segment_id: str) -> set[str]:
    query = select(SegmentMember.customer_id).where(SegmentMember.segment_id == segment_id)
    return set(session.scalars(query.execution_options(yield_per=10_000)))


def members_among(
    session: Session, segment_ids: Collection[str], customer_ids: Collection[str]
) -> set[tuple[str, str]]:
    """(segment_id, customer_id) of the given customers' current memberships."""
    found: set[tuple[str, str]] = set()
    for chunk in chunks(sorted(customer_ids)):
        query = select(SegmentMember.segment_id, SegmentMember.customer_id).where(
            SegmentMember.segment_id.in_(list(segment_ids)),
            one_of(session, SegmentMember.customer_id, chunk),
        )
        found.update((s, c) for s, c in session.execute(query))
    return found


def add_memberships(session: Session, pairs: Sequence[tuple[str, str]], at: datetime) -> None:
    """New members, (segment_id, customer_id), and the opening row of each stay in the
    history: one statement per table for all the segments of a write."""
    if not pairs:
        return
    bulk_write(
        session,
        table_of(SegmentMember),
        [{"segment_id": s, "customer_id": c, "entered_at": at} for s, c in pairs],
        shape="members",
    )
    bulk_write(
        session,
        table_of(SegmentMembershipSpan),
        [
            {"segment_id": s, "customer_id": c, "entered_at": at, "exited_at": None}
            for s, c in pairs
        ],
        shape="history",
    )


def end_memberships(session: Session, pairs: Sequence[tuple[str, str]], at: datetime) -> None:
    """Members who left, (segment_id, customer_id), and the end of their stay in the history."""
    by_segment: dict[str, list[str]] = {}
    for segment_id, customer_id in pairs:
        by_segment.setdefault(segment_id, []).append(customer_id)
    leave, close = prepared(session, ("segments.end_memberships",), lambda: _leaving(session))
    for segment_id, customer_ids in by_segment.items():
        for chunk in chunks(customer_ids):
            values = {"segment": segment_id, "ids": list(chunk), "at": at}
            session.execute(leave, values)
            session.execute(close, values)


def _leaving(session: Session) -> tuple[Delete, Update]:
    """The members of `segment` among `ids` removed, and their open stays closed at `at` (no
    parameter is named after a column: an UPDATE keeps those names for its SET values)."""
    members, spans = table_of(SegmentMember), table_of(SegmentMembershipSpan)
    leave = delete(members).where(
        members.c.segment_id == bindparam("segment"),
        one_of_parameter(session, members.c.customer_id, "ids"),
    )
    close = (
        update(spans)
        .where(
            spans.c.segment_id == bindparam("segment"),
            one_of_parameter(session, spans.c.customer_id, "ids"),
            spans.c.exited_at.is_(None),
        )
        .values(exited_at=bindparam("at", type_=UTCDateTime()))
    )
    return leave, close


def add_to_counts(session: Session, deltas: Mapping[str, int]) -> None:
    """Live changes move the counts (segment id -> members gained, negative when lost): one
    appended row per segment, never an update of the segment row, which concurrent ingesting
    transactions on PostgreSQL would queue on. `fold_count_changes` adds them up later."""
    rows = [
        {"segment_id": segment_id, "delta": delta}
        for segment_id, delta in sorted(deltas.items())
        if delta
    ]
    if rows:
        session.execute(insert(table_of(SegmentCountChange)), rows)


def fold_count_changes(session: Session) -> None:
    """Add the appended count changes into segments.members_count and remove them, exactly
    once: DELETE ... RETURNING answers the very rows it removed, so a change committed while
    this runs is either folded now or left for the next fold (and two folds never share one)."""
    removed = session.execute(
        delete(SegmentCountChange).returning(
            SegmentCountChange.segment_id, SegmentCountChange.delta
        )
    ).all()
    totals: dict[str, int] = {}
    for segment_id, delta in removed:
        totals[segment_id] = totals.get(segment_id, 0) + delta
    moved = {segment_id: total for segment_id, total in sorted(totals.items()) if total}
    if moved:
        session.execute(
            update(Segment)
            .where(Segment.id.in_(list(moved)))
            .values(members_count=Segment.members_count + case(moved, value=Segment.id, else_=0))
        )


def member_counts(session: Session, segments: Sequence[Segment]) -> dict[str, int]:
    """Segment id -> members now: the folded count plus the changes appended since."""
    counts = {segment.id: segment.members_count for segment in segments}
    if not counts:
        return counts
    query = (
        select(SegmentCountChange.segment_id, func.sum(SegmentCountChange.delta))
        .where(SegmentCountChange.segment_id.in_(list(counts)))
        .group_by(SegmentCountChange.segment_id)
    )
    for segment_id, pending in session.execute(query):
        counts[segment_id] += int(pending)
    return counts


ANALYZE_AFTER_ROWS = 10_000


def refresh_statistics(session: Session, *, rows_changed: int) -> None:
    """After a compute that wrote many members, let PostgreSQL's planner see them now rather
    than at the next autovacuum: with stale statistics, the live re-evaluation's membership
    lookup reads a whole segment instead of a few customers."""
    if rows_changed >= ANALYZE_AFTER_ROWS and session.get_bind().dialect.name == "postgresql":
        session.execute(text("ANALYZE segment_members"))


def set_computed(session: Session, segment_id: str, *, members: int, at: datetime) -> None:
    """A full compute counted the members itself: the changes appended before it are in that
    count, so they go."""
    session.execute(delete(SegmentCountChange).where(SegmentCountChange.segment_id == segment_id))
    session.execute(
        update(Segment)
        .where(Segment.id == segment_id)
        .values(members_count=members, computed_at=at, swept_at=at)
    )
    _record_day(session, [segment_id], at)


def set_swept(session: Session, segment_ids: Iterable[str], at: datetime) -> None:
    ids = list(segment_ids)
    fold_count_changes(session)  # the day's counts below read members_count
    if ids:
        session.execute(update(Segment).where(Segment.id.in_(ids)).values(swept_at=at))
        _record_day(session, ids, at)


def _record_day(session: Session, segment_ids: Sequence[str], at: datetime) -> None:
    """Keep today's count (UTC) in step with the segments' counts, for trend lines."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    day = literal(at.date().isoformat(), SegmentCount.day.type)
    statement = dialect.insert(SegmentCount).from_select(
        ["segment_id", "day", "members_count"],
        select(Segment.id, day, Segment.members_count).where(Segment.id.in_(segment_ids)),
    )
    excluded = statement.excluded
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["segment_id", "day"], set_={"members_count": excluded.members_count}
        )
    )


def list_member_ids(
    session: Session, segment_id: str, *, after: str | None, limit: int
) -> list[str]:
    query = (
        select(SegmentMember.customer_id)
        .where(SegmentMember.segment_id == segment_id)
        .order_by(SegmentMember.customer_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(SegmentMember.customer_id > after)
    return list(session.scalars(query))


def list_members(
    session: Session, segment_id: str, *, after: str | None, limit: int
) -> list[tuple[SegmentMember, Customer]]:
    query = (
        select(SegmentMember, Customer)
        .join(Customer, Customer.id == SegmentMember.customer_id)
        .where(SegmentMember.segment_id == segment_id)
        .order_by(SegmentMember.customer_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(SegmentMember.customer_id > after)
    return [(m, c) for m, c in session.execute(query)]


def customers_by_id(session: Session, customer_ids: Sequence[str]) -> list[Customer]:
    """The customers, in the order given (ids not found are left out)."""
    if not customer_ids:
        return []
    found = {
        c.id: c
        for c in session.scalars(select(Customer).where(one_of(session, Customer.id, customer_ids)))
    }
    return [found[i] for i in customer_ids if i in found]


def memberships_of(session: Session, customer_id: str) -> list[tuple[SegmentMember, Segment]]:
    query = (
        select(SegmentMember, Segment)
        .join(Segment, Segment.id == SegmentMember.segment_id)
        .where(SegmentMember.customer_id == customer_id)
        .order_by(Segment.key)
    )
    return [(m, s) for m, s in session.execute(query)]


def history_of(
    session: Session, customer_id: str, *, before: tuple[datetime, int] | None, limit: int
) -> list[tuple[SegmentMembershipSpan, Segment]]:
    """Stays, newest first."""
    query = (
        select(SegmentMembershipSpan, Segment)
        .join(Segment, Segment.id == SegmentMembershipSpan.segment_id)
        .where(SegmentMembershipSpan.customer_id == customer_id)
        .order_by(SegmentMembershipSpan.entered_at.desc(), SegmentMembershipSpan.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(
            tuple_(SegmentMembershipSpan.entered_at, SegmentMembershipSpan.id)
            < tuple_(before[0], before[1])
        )
    return [(h, s) for h, s in session.execute(query)]


def move_history(session: Session, *, merged_id: str, survivor_id: str) -> None:
    """A merged profile's past stays become the survivor's (call after its current
    memberships were ended with remove_members)."""
    session.execute(
        update(SegmentMembershipSpan)
        .where(
            and_(
                SegmentMembershipSpan.customer_id == merged_id,
                SegmentMembershipSpan.exited_at.is_not(None),
            )
        )
        .values(customer_id=survivor_id)
    )


def segment_ids_of(session: Session, customer_id: str) -> list[str]:
    query = select(SegmentMember.segment_id).where(SegmentMember.customer_id == customer_id)
    return list(session.scalars(query))


# --- what live re-evaluation reads of a few customers ---


def load_people(
    session: Session,
    customer_ids: Sequence[str],
    *,
    event_reads: Mapping[str, EventRead],
    now: datetime,
    segment_ids: Mapping[str, str],
    expect_version: Version | None = None,
) -> list[engine.Person]:
    """The customers with everything a rule can read: profile, facts, consents, groups,
    memberships of the given segments (key -> id) and their events of the given names, as
    far back as `event_reads` says (before `now`), properties only where a rule reads them.
    Read as plain rows (no ORM objects) by statements built once per shape, in one round
    trip on PostgreSQL: this is the hot path of live re-evaluation, where one customer's
    rows take SQLite a tenth of what building the statements took.

    With `expect_version`, the segments' version is read in the same round trip, and
    SegmentsChanged raised when it is another: the caller's rules may be stale."""
    people: dict[str, engine.Person] = {}
    keys = {segment_id: key for key, segment_id in segment_ids.items()}
    event_shape = _EventShape.of(event_reads)
    profiles = prepared(session, ("segments.people",), lambda: _people_query(session))
    relations = prepared(
        session,
        ("segments.relations", event_shape, bool(keys)),
        lambda: _relations_query(session, event_shape, memberships=bool(keys)),
    )
    since = event_shape.since(now)
    for chunk in chunks(list(customer_ids)):
        ids = {"ids": list(chunk)}
        reads: list[tuple[Any, Mapping[str, Any]]] = [
            (profiles, ids),
            (relations, ids | since),
        ]
        if expect_version is not None:
            reads.append((_VERSION, {}))
        found_profiles, found_relations, *found_version = read_together(session, reads)
        if expect_version is not None and _as_version(found_version[0]) != expect_version:
            raise SegmentsChanged
        expect_version = None  # checked once is enough
        for row in found_profiles:
            person = _person(row)
            people[person.id] = person
        for row in found_relations:
            _add_relation(people, row, keys)
    return list(people.values())


# Every profile field a rule can read (rules.py), plus the id and the traits.
_PROFILE_FIELDS = ("id", *PROFILE_TIME_FIELDS, *PROFILE_TEXT_FIELDS, "traits")
_FACT_FIELDS = tuple(engine.Facts.__dataclass_fields__)
_CUSTOMERS, _FACTS = table_of(Customer), table_of(CustomerFacts)


def _people_query(session: Session) -> Select[Any]:
    """Profiles with their facts, of the customers in the parameter `ids`."""
    return (
        select(
            *(_CUSTOMERS.c[name] for name in _PROFILE_FIELDS),
            _FACTS.c.customer_id.label("facts_of"),
            *(_FACTS.c[name].label(f"fact_{name}") for name in _FACT_FIELDS),
        )
        .outerjoin(_FACTS, _FACTS.c.customer_id == _CUSTOMERS.c.id)
        .where(one_of_parameter(session, _CUSTOMERS.c.id, "ids"))
    )


def _person(row: tuple[Any, ...]) -> engine.Person:
    """One row of `_people_query`: the profile fields, then `facts_of`, then the facts."""
    profile, facts_of = len(_PROFILE_FIELDS), row[len(_PROFILE_FIELDS)]
    person = engine.Person(**dict(zip(_PROFILE_FIELDS, row[:profile], strict=True)))
    if facts_of is not None:
        person.facts = engine.Facts(*row[profile + 1 :])
    return person


@dataclass(frozen=True)
class _EventShape:
    """The event reads of a load grouped by what is read alike: one select per group of
    names, those with a lookback bounded by the parameter `since_<n>`."""

    groups: tuple[tuple[tuple[str, ...], EventRead], ...]

    @classmethod
    def of(cls, reads: Mapping[str, EventRead]) -> _EventShape:
        by_read: dict[EventRead, list[str]] = {}
        for name, read in reads.items():
            by_read.setdefault(read, []).append(name)
        groups = sorted((tuple(sorted(names)), read) for read, names in by_read.items())
        return cls(tuple(groups))

    def since(self, now: datetime) -> dict[str, datetime]:
        return {
            f"since_{n}": now - read.lookback
            for n, (_, read) in enumerate(self.groups)
            if read.lookback is not None
        }


def _relations_query(
    session: Session, event_shape: _EventShape, *, memberships: bool
) -> CompoundSelect[Any]:
    """Events (of these names), consents, groups and, if asked, segment memberships of the
    customers in the parameter `ids`, in one statement (one round trip on PostgreSQL instead
    of four): rows of one shape, tagged by kind."""
    events, consents = table_of(Event), table_of(Consent)
    groups, group_members = table_of(Group), table_of(GroupMembership)
    members = table_of(SegmentMember)
    nothing_at, nothing_json = type_coerce(null(), UTCDateTime()), type_coerce(null(), JSONType)
    parts: list[Select[Any]] = [
        select(
            literal("consent"),
            consents.c.customer_id,
            consents.c.channel,
            consents.c.topic,
            consents.c.status,
            nothing_at,
            nothing_json,
        ).where(one_of_parameter(session, consents.c.customer_id, "ids")),
        select(
            literal("group"),
            group_members.c.customer_id,
            groups.c.group_key,
            null(),
            null(),
            nothing_at,
            groups.c.traits,
        )
        .join(groups, groups.c.id == group_members.c.group_id)
        .where(one_of_parameter(session, group_members.c.customer_id, "ids")),
    ]
    for n, (names, read) in reversed(list(enumerate(event_shape.groups))):
        # first: their typed columns give the union's types
        conditions = [
            one_of(session, events.c.name, names),
            one_of_parameter(session, events.c.customer_id, "ids"),
        ]
        if read.lookback is not None:
            conditions.append(events.c.timestamp >= bindparam(f"since_{n}", type_=UTCDateTime()))
        # A typed NULL: PostgreSQL takes two untyped NULLs in a row of the union for text.
        properties = events.c.properties if read.properties else cast(null(), JSONType)
        parts.insert(
            0,
            select(
                literal("event"),
                events.c.customer_id,
                events.c.name,
                null(),
                null(),
                events.c.timestamp,
                properties,
            ).where(*conditions),
        )
    if memberships:
        # Every membership of the customers (`_add_relation` keeps the wanted segments'): one
        # search of the customer index per customer. With the segments' list beside it, SQLite
        # searched the primary key for every (segment, customer) pair: 0.36 ms a batch of 100
        # customers and 20 segments, against 0.07.
        parts.append(
            select(
                literal("member"),
                members.c.customer_id,
                members.c.segment_id,
                null(),
                null(),
                nothing_at,
                nothing_json,
            ).where(one_of_parameter(session, members.c.customer_id, "ids"))
        )
    return union_all(*parts)


def _add_relation(
    people: Mapping[str, engine.Person], row: tuple[Any, ...], segments: Mapping[str, str]
) -> None:
    """One row of `_relations_query` onto its person: (kind, customer, a, b, c, at, doc)."""
    kind, customer_id, a, b, c, at, document = row
    person = people.get(customer_id)
    if person is None:
        return
    if kind == "event":
        person.events.append(engine.Event(a, at, {} if document is None else document))
    elif kind == "consent":
        person.consents[(a, b)] = c
    elif kind == "group":
        person.groups.append(engine.Group(a, document))
    elif a in segments:  # a membership, of a segment the caller asked about
        person.segments.add(segments[a])


# --- what the dashboard reads ---


def counts_since(
    session: Session, segment_ids: Sequence[str], *, since: str
) -> list[tuple[str, str, int]]:
    """(segment_id, day, members) of the stored daily counts from `since` (YYYY-MM-DD) on,
    by segment and day: a read of the primary key, never a count of members."""
    if not segment_ids:
        return []
    query = (
        select(SegmentCount.segment_id, SegmentCount.day, SegmentCount.members_count)
        .where(SegmentCount.segment_id.in_(list(segment_ids)), SegmentCount.day >= since)
        .order_by(SegmentCount.segment_id, SegmentCount.day)
    )
    return [(str(s), str(d), int(n)) for s, d, n in session.execute(query)]
