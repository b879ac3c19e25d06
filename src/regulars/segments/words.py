"""Rule nodes in words, for explain: "Order Completed count in the last 90 days >= 2"."""

from __future__ import annotations

from regulars.segments.rules import (
    AbsenceCondition,
    And,
    ConsentCondition,
    Duration,
    EventCondition,
    EventFilter,
    EventTimeCondition,
    FactCondition,
    FunnelCondition,
    GroupCondition,
    Not,
    Op,
    Or,
    ProfileCondition,
    PropertyPredicate,
    ReachableCondition,
    Rule,
    SegmentCondition,
    Window,
)

_OPS = {
    Op.EQUALS: "is",
    Op.NOT_EQUALS: "is not",
    Op.IN: "is one of",
    Op.NOT_IN: "is none of",
    Op.CONTAINS: "contains",
    Op.STARTS_WITH: "starts with",
    Op.EXISTS: "is set",
    Op.MISSING: "is not set",
    Op.GT: ">",
    Op.GTE: ">=",
    Op.LT: "<",
    Op.LTE: "<=",
    Op.BETWEEN: "is between",
    Op.BEFORE: "is before",
    Op.AFTER: "is after",
    Op.WITHIN_LAST: "is within the last",
    Op.WITHIN_NEXT: "is within the next",
    Op.NOT_WITHIN_LAST: "is not within the last",
    Op.ANNIVERSARY_WITHIN: "has its anniversary within",
}


def describe(node: Rule) -> str:
    if isinstance(node, And):
        return f"all of these {len(node.rules)} conditions hold"
    if isinstance(node, Or):
        return f"at least one of these {len(node.rules)} conditions holds"
    if isinstance(node, Not):
        return "the condition below does not hold"
    if isinstance(node, (ProfileCondition, FactCondition, GroupCondition)):
        subject = f"group {node.field}" if isinstance(node, GroupCondition) else node.field
        return _compare(subject, node.op, node.value)
    if isinstance(node, EventCondition):
        measure = "count" if node.property is None else f"{node.aggregate.value} of {node.property}"
        subject = f"{_event(EventFilter(name=node.name, where=node.where))} {measure}"
        return _compare(f"{subject}{_window(node.window)}", node.op, node.value)
    if isinstance(node, EventTimeCondition):
        subject = f"{node.occurrence.value} {_event(EventFilter(name=node.name, where=node.where))}"
        return _compare(subject, node.op, node.value)
    return _describe_other(node)


def _describe_other(node: Rule) -> str:
    if isinstance(node, AbsenceCondition):
        first = _event(EventFilter(name=node.name, where=node.where))
        return (
            f"last {first}{_window(node.window)} was not followed by "
            f"{_event(node.then_not)} within {_duration(node.within)}"
        )
    if isinstance(node, FunnelCondition):
        steps = ", then ".join(_event(step) for step in node.steps)
        within = f", within {_duration(node.within)}" if node.within else ""
        return f"performed {steps}{within}{_window(node.window)}"
    if isinstance(node, ConsentCondition):
        topic = f" topic {node.topic!r}" if node.topic else ""
        return f"{node.channel.value}{topic} consent is {node.status.value}"
    if isinstance(node, ReachableCondition):
        return f"reachable by {node.channel.value}"
    if isinstance(node, SegmentCondition):
        return f"{'in' if node.member else 'not in'} segment {node.segment!r}"
    raise TypeError(f"no words for {type(node).__name__}")


def _compare(subject: str, op: Op, value: object) -> str:
    if value is None:
        return f"{subject} {_OPS[op]}"
    return f"{subject} {_OPS[op]} {_value(value)}"


def _value(value: object) -> str:
    if isinstance(value, Duration):
        return _duration(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def _duration(duration: Duration) -> str:
    unit = duration.unit.value.removesuffix("s") if duration.amount == 1 else duration.unit.value
    return f"{duration.amount} {unit}"


def _event(event: EventFilter) -> str:
    where = " and ".join(_predicate(p) for p in event.where)
    return f"{event.name!r}" + (f" where {where}" if where else "")


def _predicate(predicate: PropertyPredicate) -> str:
    return _compare(predicate.property, predicate.op, predicate.value)


def _window(window: Window | None) -> str:
    if window is None:
        return " ever"
    if window.last is not None:
        return f" in the last {_duration(window.last)}"
    since = f" from {window.since}" if window.since else ""
    until = f" until {window.until}" if window.until else ""
    return since + until
