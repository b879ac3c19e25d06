"""The segments domain's public verbs: what API, CLI, tasks and other domains call.

Work lives in sub-modules: `definitions` (create, edit, validate, built-ins), `membership`
(compute and diffs), `live` (re-evaluation on change, the time sweep). Importing this module
registers the live listener with the customers domain, so every process that can change a
customer (server, worker, CLI) keeps memberships current in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from regulars.customers import service as customers
from regulars.customers.rules import display_name
from regulars.errors import NotFound
from regulars.jobs import service as jobs
from regulars.kit import clock
from regulars.kit.pagination import decode_cursor, encode_cursor
from regulars.segments import definitions, engine, live, membership, repository, words
from regulars.segments.definitions import (
    ensure_builtins,
    find,
    list_page,
    require,
    segment_read,
    validated_rule,
)
from regulars.segments.live import plan_sweep, run_sweep_step, sweep, sweep_in_steps
from regulars.segments.repository import compiler
from regulars.segments.rules import (
    EventCondition,
    Rule,
    children,
    event_filter,
    parse_rule,
    reads_rfm,
    walk,
)
from regulars.segments.schemas import (
    ComputeResult,
    CustomerBrief,
    Explanation,
    MemberPage,
    MemberRead,
    MembershipList,
    MembershipRead,
    NodeExplanation,
    Preview,
    SegmentCreate,
    SegmentRead,
    SegmentUpdate,
)
from regulars.segments.words import describe

customers.on_change(live.on_customers_changed)
customers.on_removal(live.on_customer_removed)

__all__ = [
    "all_keys",
    "anniversary_falls_on",
    "check_condition",
    "compute",
    "compute_all",
    "condition_holds",
    "create",
    "delete",
    "ensure_builtins",
    "exists",
    "explain",
    "find",
    "history_of",
    "list_page",
    "matching_ids",
    "members",
    "memberships_of",
    "outline",
    "plan_sweep",
    "preview",
    "preview_draft",
    "queue_compute",
    "reevaluate",
    "refresh_rfm",
    "require",
    "rfm_readers",
    "run_sweep_step",
    "segment_read",
    "sweep",
    "sweep_in_steps",
    "trends",
    "update",
]


def create(session: Session, data: SegmentCreate) -> SegmentRead:
    """Save the segment; its members come with the first compute (task or `compute`)."""
    return segment_read(session, definitions.create(session, data))


def update(session: Session, key_or_id: str, data: SegmentUpdate) -> tuple[SegmentRead, bool]:
    segment, rule_changed = definitions.update(session, key_or_id, data)
    return segment_read(session, segment), rule_changed


def delete(session: Session, key_or_id: str) -> None:
    definitions.delete(session, key_or_id)


def queue_compute(session: Session, key: str) -> None:
    """Compute in the background, once per version of the rule."""
    segment = require(session, key)
    jobs.enqueue(
        session,
        "segments.compute",
        {"segment": segment.key},
        idempotency_key=f"segments.compute:{segment.id}:{segment.updated_at.isoformat()}",
    )


def compute(session: Session, key_or_id: str, *, now: datetime | None = None) -> ComputeResult:
    return membership.compute(session, require(session, key_or_id), now=now)


def compute_all(session: Session, *, now: datetime | None = None) -> list[ComputeResult]:
    """Every segment, referred-to segments first."""
    segments = repository.all_segments(session)
    return [
        membership.compute(session, segment, now=now)
        for level in membership.levels(segments)
        for segment in level
    ]


def refresh_rfm(session: Session, *, now: datetime | None = None) -> int:
    """Refresh RFM scores, then fully compute every segment whose rule reads them, all in
    the caller's transaction (the demo, tests; the worker's job commits in steps)."""
    now = now or clock.now()
    changed = customers.refresh_rfm(session, now=now)
    for key in rfm_readers(session):
        compute(session, key, now=now)
    return changed


def rfm_readers(session: Session) -> list[str]:
    """The keys of the segments whose rule reads RFM scores, in the order to compute them:
    each after the segments it refers to."""
    readers = [s for s in repository.all_segments(session) if reads_rfm(parse_rule(s.rule))]
    return [segment.key for level in membership.levels(readers) for segment in level]


def reevaluate(session: Session, changes: dict[str, customers.CustomerChange]) -> None:
    """Re-evaluate what the changes could affect (what ingestion calls by itself)."""
    live.on_customers_changed(session, changes)


def preview(session: Session, rule_json: dict[str, Any], *, sample: int = 10) -> Preview:
    """Count and a sample of who a rule holds for, without saving anything."""
    rule = validated_rule(rule_json)
    ctx = membership.context(session, now=clock.now())
    count, ids = compiler.count_and_sample(session, rule, ctx, sample=sample)
    return Preview(count=count, sample=_briefs(session, ids))


def check_condition(rule_json: object, *, field: str) -> None:
    """A 422 naming the path of each bad node, when `rule_json` is no valid rule."""
    validated_rule(rule_json, field=field)


def condition_holds(
    session: Session, rule_json: object, customer_ids: Sequence[str], *, now: datetime
) -> set[str]:
    """Which of the customers an unsaved rule holds for now (journeys' branches)."""
    if not customer_ids:
        return set()
    return membership.holds_for(session, parse_rule(rule_json), customer_ids, now=now)


def matching_ids(
    session: Session, rule_json: object, *, now: datetime, limit: int = 10_000_000
) -> list[str]:
    """Every customer an unsaved rule holds for now, in one statement per state."""
    ctx = membership.context(session, now=now)
    return compiler.count_and_sample(session, parse_rule(rule_json), ctx, sample=limit)[1]


def anniversary_falls_on(value: object, target: date) -> bool:
    """Whether a date trait ("YYYY-MM-DD...") has its yearly date on `target`, as the
    anniversary rules read it (29 February on the 28th in other years)."""
    day = engine.trait_date(value)
    return day is not None and engine.falls_on(day, target)


def exists(session: Session, key: str) -> bool:
    return find(session, key) is not None


def _briefs(session: Session, customer_ids: list[str]) -> list[CustomerBrief]:
    briefs = []
    for customer in repository.customers_by_id(session, customer_ids):
        name = display_name(customer.first_name, customer.last_name) or None
        briefs.append(
            CustomerBrief(
                id=customer.id, external_id=customer.external_id, email=customer.email, name=name
            )
        )
    return briefs


def explain(
    session: Session,
    customer_id: str,
    *,
    key_or_id: str | None = None,
    rule_json: dict[str, Any] | None = None,
) -> Explanation:
    """Every node's verdict for one customer, in words with what was measured, and the
    stored membership beside it (for a saved segment)."""
    customer_id = _live_customer(session, customer_id)
    segment = require(session, key_or_id) if key_or_id is not None else None
    raw = segment.rule if segment is not None else rule_json
    rule: Rule = validated_rule(raw)
    ctx = membership.context(session, now=clock.now(), candidates=[customer_id])
    verdicts = compiler.explain(session, rule, customer_id, ctx)
    nodes = [
        NodeExplanation(
            path=v.path,
            type=v.type,
            holds=v.holds,
            measured=v.measured,
            says=_says(node, v.measured),
        )
        for node, v in zip(walk(rule), verdicts, strict=True)
    ]
    member = None
    if segment is not None:
        member = bool(repository.members_among(session, [segment.id], [customer_id]))
    return Explanation(
        segment=segment.key if segment else None,
        customer_id=customer_id,
        holds=nodes[0].holds,
        member=member,
        nodes=nodes,
    )


def _says(node: Rule, measured: object) -> str:
    words = describe(node)
    if isinstance(measured, datetime):
        measured = measured.isoformat(timespec="seconds")
    return words if measured is None else f"{words} (found: {measured})"


def _live_customer(session: Session, customer_id: str) -> str:
    resolved = customers.resolve_id(session, customer_id)
    if resolved is None:
        raise NotFound(f"no customer with id {customer_id!r}", details={"id": customer_id})
    return resolved


def members(session: Session, key_or_id: str, *, cursor: str | None, limit: int) -> MemberPage:
    segment = require(session, key_or_id)
    after = decode_cursor(cursor, 1)[0] if cursor else None
    rows = repository.list_members(session, segment.id, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return MemberPage(
        items=[
            MemberRead(
                customer_id=c.id, external_id=c.external_id, email=c.email, entered_at=m.entered_at
            )
            for m, c in rows
        ],
        next_cursor=encode_cursor(rows[-1][1].id) if more else None,
    )


def all_members(session: Session, key_or_id: str) -> Iterator[MemberRead]:
    """Every member, in pages, for a CSV export of any size."""
    cursor: str | None = None
    while True:
        page = members(session, key_or_id, cursor=cursor, limit=1000)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def memberships_of(session: Session, customer_id: str) -> MembershipList:
    customer_id = _live_customer(session, customer_id)
    return MembershipList(
        items=[
            MembershipRead(segment_id=s.id, key=s.key, name=s.name, entered_at=m.entered_at)
            for m, s in repository.memberships_of(session, customer_id)
        ]
    )


def history_of(
    session: Session, customer_id: str, *, cursor: str | None, limit: int
) -> MembershipList:
    """Every stay in every segment, newest first."""
    customer_id = _live_customer(session, customer_id)
    before = None
    if cursor:
        entered, span_id = decode_cursor(cursor, 2)
        before = (datetime.fromisoformat(entered), int(span_id))
    rows = repository.history_of(session, customer_id, before=before, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1][0] if rows else None
    return MembershipList(
        items=[
            MembershipRead(
                segment_id=s.id,
                key=s.key,
                name=s.name,
                entered_at=h.entered_at,
                exited_at=h.exited_at,
            )
            for h, s in rows
        ],
        next_cursor=encode_cursor(last.entered_at.isoformat(), last.id) if more and last else None,
    )


def member_ids_after(
    session: Session, key_or_id: str, *, after: str | None, limit: int
) -> list[str]:
    """Member ids in id order, after `after`: how broadcasts walk a segment of any size."""
    segment = require(session, key_or_id)
    return repository.list_member_ids(session, segment.id, after=after, limit=limit)


def exported(session: Session, customer_id: str) -> dict[str, list[MembershipRead]]:
    """For the GDPR export: every stay in every segment."""
    history = history_of(session, customer_id, cursor=None, limit=100_000)
    return {"segment_history": history.items}


customers.on_export(exported)


# --- what the dashboard shows ---


def outline(rule_json: object) -> list[tuple[int, str]]:
    """The rule as lines of words with their depth, parents before children (walk order)."""
    return [(depth, _readable(node)) for depth, node in _depths(validated_rule(rule_json))]


_TIMES = {"gte": "at least", "gt": "more than", "lte": "at most", "lt": "fewer than", "equals": ""}


def _readable(node: Rule) -> str:
    """describe(), with event counts as people say them: "performed 'Order Completed' at
    least 2 times in the last 90 days"."""
    if not isinstance(node, EventCondition) or node.property is not None:
        return describe(node)
    if node.op.value not in _TIMES or isinstance(node.value, list):
        return describe(node)
    event = words._event(event_filter(node))
    window = words._window(node.window) if node.window is not None else ""
    if node.op.value == "gte" and node.value == 1:
        return f"performed {event}{window}"
    if (node.op.value, node.value) in (("lt", 1), ("lte", 0), ("equals", 0)):
        return f"never performed {event}{window}"
    times = "time" if node.value == 1 else "times"
    amount = " ".join(part for part in (_TIMES[node.op.value], f"{node.value:g}") if part)
    return f"performed {event} {amount} {times}{window}"


def _depths(rule: Rule, depth: int = 0) -> Iterator[tuple[int, Rule]]:
    yield depth, rule
    for child in children(rule):
        yield from _depths(child, depth + 1)


def trends(
    session: Session, segment_ids: Sequence[str], *, days: int = 30, today: date | None = None
) -> dict[str, list[tuple[str, int | None]]]:
    """Members per day over the last `days` days (UTC) from the stored daily counts; a day
    without a stored count keeps the day before's (None before the first one)."""
    today = today or clock.now().date()
    axis = [(today - timedelta(days=days - 1 - i)).isoformat() for i in range(days)]
    stored: dict[str, dict[str, int]] = {segment_id: {} for segment_id in segment_ids}
    for segment_id, day, count in repository.counts_since(session, segment_ids, since=axis[0]):
        stored[segment_id][day] = count
    result: dict[str, list[tuple[str, int | None]]] = {}
    for segment_id, counts in stored.items():
        last: int | None = None
        line: list[tuple[str, int | None]] = []
        for day in axis:
            last = counts.get(day, last)
            line.append((day, last))
        result[segment_id] = line
    return result


def preview_draft(
    session: Session, rule_json: object, *, key: str | None = None, sample: int = 10
) -> Preview:
    """`preview` for the builder: a rule naming a missing segment, or leading back to `key`,
    is the 422 saving it would be, not an error of the compiler."""
    rule = validated_rule(rule_json)
    definitions._check_references(session, key or "", rule)
    ctx = membership.context(session, now=clock.now())
    count, ids = compiler.count_and_sample(session, rule, ctx, sample=sample)
    return Preview(count=count, sample=_briefs(session, ids))


def all_keys(session: Session) -> list[str]:
    """Every segment's key, sorted (the builder's choice of segments to refer to)."""
    return sorted(repository.key_ids(session))
