"""The segments the product ships: lifecycle stages and the eleven named RFM groups.

Pure: each is a key, a name, a sentence for a marketer and a rule in its canonical JSON form
(what `rules.dump_rule(rules.parse_rule(rule))` gives back). docs/segments-builtin.md
explains them; tests/segments/test_builtin.py checks that the documented grid is this one.

Lifecycle stages partition the customers with at least one order (customers who never
ordered are in none); with the settings' new <= active < at risk days, in this order:

- new: first order within `lifecycle_new_days`;
- loyal: last order within `lifecycle_active_days`, at least `lifecycle_loyal_orders`
  orders, and not new;
- active: last order within `lifecycle_active_days`, fewer orders, and not new;
- at risk: last order within `lifecycle_at_risk_days`, but not within the active days;
- lapsed: no order within `lifecycle_at_risk_days`.

RFM groups partition the scored customers (customers/rfm.py) by recency (R) and frequency
(F), the widely published 5 x 5 grid; monetary (M) is scored for custom rules but takes no
part, since F and M move together for most stores:

    R\\F  1              2              3              4          5
    5    new            potential      potential      champions  champions
    4    promising      potential      potential      loyal      loyal
    3    about to sleep about to sleep need attention loyal      loyal
    2    hibernating    hibernating    at risk        at risk    cannot lose them
    1    lost           hibernating    at risk        at risk    cannot lose them
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regulars.config import Settings

Span = tuple[int, int]  # a range of scores, both ends included
Cell = tuple[Span, Span]  # (recency scores, frequency scores)


@dataclass(frozen=True)
class BuiltinSegment:
    key: str
    name: str
    description: str
    rule: dict[str, Any]


@dataclass(frozen=True)
class RfmGroup:
    key: str
    name: str
    description: str
    cells: tuple[Cell, ...]


RFM_GROUPS: tuple[RfmGroup, ...] = (
    RfmGroup(
        "champions",
        "Champions",
        "Bought most recently and most often",
        (((5, 5), (4, 5)),),
    ),
    RfmGroup(
        "loyal",
        "Loyal customers",
        "Buy often and bought fairly recently",
        (((3, 4), (4, 5)),),
    ),
    RfmGroup(
        "potential_loyalists",
        "Potential loyalists",
        "Recent customers with a few orders who could become loyal",
        (((4, 5), (2, 3)),),
    ),
    RfmGroup(
        "new",
        "New customers",
        "Bought very recently, but rarely",
        (((5, 5), (1, 1)),),
    ),
    RfmGroup(
        "promising",
        "Promising",
        "Bought recently, but rarely",
        (((4, 4), (1, 1)),),
    ),
    RfmGroup(
        "need_attention",
        "Need attention",
        "Middling recency and frequency: worth a nudge before they slip",
        (((3, 3), (3, 3)),),
    ),
    RfmGroup(
        "about_to_sleep",
        "About to sleep",
        "Middling recency and few orders: slipping away",
        (((3, 3), (1, 2)),),
    ),
    RfmGroup(
        "at_risk",
        "At risk",
        "Used to buy fairly often, but not for a long time",
        (((1, 2), (3, 4)),),
    ),
    RfmGroup(
        "cannot_lose_them",
        "Cannot lose them",
        "Were among the most frequent buyers, but not for a long time",
        (((1, 2), (5, 5)),),
    ),
    RfmGroup(
        "hibernating",
        "Hibernating",
        "Few orders, long ago",
        (((2, 2), (1, 2)), ((1, 1), (2, 2))),
    ),
    RfmGroup(
        "lost",
        "Lost",
        "The fewest orders, the longest ago",
        (((1, 1), (1, 1)),),
    ),
)


def builtin_segments(settings: Settings) -> list[BuiltinSegment]:
    """Every built-in segment, lifecycle stages first, with the thresholds of `settings`."""
    return [*lifecycle_segments(settings), *rfm_segments()]


# --- lifecycle ---


def _days(amount: int) -> dict[str, Any]:
    return {"amount": amount, "unit": "days"}


def _fact(field: str, op: str, value: Any) -> dict[str, Any]:
    return {"type": "fact", "field": field, "op": op, "value": value}


def _and(*rules: dict[str, Any]) -> dict[str, Any]:
    return rules[0] if len(rules) == 1 else {"type": "and", "rules": list(rules)}


def lifecycle_segments(settings: Settings) -> list[BuiltinSegment]:
    new, active = settings.lifecycle_new_days, settings.lifecycle_active_days
    at_risk, loyal = settings.lifecycle_at_risk_days, settings.lifecycle_loyal_orders
    rules = _lifecycle_rules(settings)
    texts = {
        "new": ("New customers", f"Placed their first order in the last {new} days."),
        "loyal": (
            "Loyal customers",
            f"At least {loyal} orders, the last in the last {active} days, "
            f"the first over {new} days ago.",
        ),
        "active": (
            "Active customers",
            f"Ordered in the last {active} days, fewer than {loyal} orders in all, "
            f"the first over {new} days ago.",
        ),
        "at_risk": ("At-risk customers", f"Last order between {active} and {at_risk} days ago."),
        "lapsed": ("Lapsed customers", f"Last order over {at_risk} days ago."),
    }
    return [
        BuiltinSegment(f"lifecycle_{stage}", name, text, rules[stage])
        for stage, (name, text) in texts.items()
    ]


def _lifecycle_rules(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each stage's rule. "Has ordered" comes first in each, so a customer without orders
    is in no stage whatever a condition on an empty time gives."""
    new, active = settings.lifecycle_new_days, settings.lifecycle_active_days
    at_risk, loyal = settings.lifecycle_at_risk_days, settings.lifecycle_loyal_orders
    ordered = _fact("orders_count", "gte", 1)
    not_new = _fact("first_order_at", "not_within_last", _days(new))
    recent = _fact("last_order_at", "within_last", _days(active))
    return {
        "new": _and(ordered, _fact("first_order_at", "within_last", _days(new))),
        "loyal": _and(ordered, recent, not_new, _fact("orders_count", "gte", loyal)),
        "active": _and(ordered, recent, not_new, _fact("orders_count", "lt", loyal)),
        "at_risk": _and(
            ordered,
            _fact("last_order_at", "not_within_last", _days(active)),
            _fact("last_order_at", "within_last", _days(at_risk)),
        ),
        "lapsed": _and(ordered, _fact("last_order_at", "not_within_last", _days(at_risk))),
    }


# --- RFM ---


def _score_range(field: str, span: Span) -> dict[str, Any]:
    low, high = span
    if low == high:
        return _fact(field, "equals", low)
    return _fact(field, "between", [low, high])


def _cell_rule(cell: Cell) -> dict[str, Any]:
    recency, frequency = cell
    return _and(_score_range("rfm_recency", recency), _score_range("rfm_frequency", frequency))


def _spans_text(cell: Cell) -> str:
    (r_low, r_high), (f_low, f_high) = cell
    recency = f"{r_low}" if r_low == r_high else f"{r_low}-{r_high}"
    frequency = f"{f_low}" if f_low == f_high else f"{f_low}-{f_high}"
    return f"recency {recency} and frequency {frequency}"


def rfm_segments() -> list[BuiltinSegment]:
    segments = []
    for group in RFM_GROUPS:
        rules = [_cell_rule(cell) for cell in group.cells]
        rule = rules[0] if len(rules) == 1 else {"type": "or", "rules": rules}
        scores = ", or ".join(_spans_text(cell) for cell in group.cells)
        segments.append(
            BuiltinSegment(
                f"rfm_{group.key}",
                f"RFM: {group.name}",
                f"{group.description} (RFM scores: {scores}).",
                rule,
            )
        )
    return segments
