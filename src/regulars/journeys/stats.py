"""How a journey is doing: per node, per arm, and the uplift against the holdout.

Uplift is the difference of conversion rates, an arm's minus the control group's, with a
95% confidence interval from the normal approximation of the difference of two proportions
(Wald): diff ± 1.96 · sqrt(p₁(1-p₁)/n₁ + p₀(1-p₀)/n₀).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy.orm import Session

from regulars.journeys import catalog, repository
from regulars.journeys.models import Journey, RunState
from regulars.journeys.schemas import ArmStats, JourneyStats, NodeStats

CONTROL = "control"
Z_95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Interval:
    uplift: float
    low: float
    high: float


def uplift(
    conversions: int, runs: int, control_conversions: int, control_runs: int
) -> Interval | None:
    """An arm's conversion rate minus the control's, with its 95% interval; None when either
    group is empty."""
    if runs == 0 or control_runs == 0:
        return None
    rate, control_rate = conversions / runs, control_conversions / control_runs
    spread = math.sqrt(rate * (1 - rate) / runs + control_rate * (1 - control_rate) / control_runs)
    diff = rate - control_rate
    return Interval(diff, diff - Z_95 * spread, diff + Z_95 * spread)


def of(session: Session, journey: Journey) -> JourneyStats:
    totals = {"runs": 0, "active": 0, "completed": 0, "exited": 0, "conversions": 0}
    revenue = 0.0
    arms: dict[str, list[float]] = {}  # variant -> [runs, conversions, revenue]
    for state, variant, runs, conversions, value in repository.run_counts(session, journey.id):
        totals["runs"] += runs
        key = {"active": "active", "waiting": "active"}.get(state, state)
        if key in totals:
            totals[key] += runs
        totals["conversions"] += conversions
        revenue += float(value or 0)
        arm = arms.setdefault(variant or "all", [0, 0, 0.0])
        arm[0], arm[1], arm[2] = arm[0] + runs, arm[1] + conversions, arm[2] + float(value or 0)
    return JourneyStats(
        key=journey.key,
        version=journey.live_version,
        runs=totals["runs"],
        active=totals["active"],
        completed=totals["completed"],
        exited=totals["exited"],
        conversions=totals["conversions"],
        revenue=round(revenue, 2),
        throttled=journey.throttled,
        nodes=_nodes(session, journey),
        arms=_arms(arms),
    )


def _arms(arms: dict[str, list[float]]) -> list[ArmStats]:
    control = arms.get(CONTROL)
    found = []
    for variant in sorted(arms):
        runs, conversions, revenue = arms[variant]
        interval = None
        if control is not None and variant != CONTROL:
            interval = uplift(int(conversions), int(runs), int(control[1]), int(control[0]))
        found.append(
            ArmStats(
                variant=variant,
                runs=int(runs),
                conversions=int(conversions),
                conversion_rate=conversions / runs if runs else 0.0,
                revenue=round(revenue, 2),
                uplift=interval.uplift if interval else None,
                uplift_low=interval.low if interval else None,
                uplift_high=interval.high if interval else None,
            )
        )
    return found


def _nodes(session: Session, journey: Journey) -> list[NodeStats]:
    types: dict[str, str] = {}
    if journey.live_version is not None:
        graph = catalog.graph_of(session, journey.id, journey.live_version)
        types = {node_id: graph.nodes[node_id].kind for node_id in graph.order()}
    counts: dict[str, dict[str, int]] = {}
    outcomes: dict[str, dict[str, int]] = {}

    def node(node_id: str) -> dict[str, int]:
        return counts.setdefault(
            node_id, {"entered": 0, "waiting": 0, "moved_on": 0, "exited": 0, "messages": 0}
        )

    for node_id, state, runs in repository.at_nodes(session, journey.id):
        if node_id is None:
            continue
        node(node_id)["entered"] += runs
        if state == RunState.WAITING:
            node(node_id)["waiting"] += runs
    for node_id, outcome, ended, steps, messages in repository.step_counts(session, journey.id):
        found = node(node_id)
        found["entered"] += steps
        found["exited" if ended else "moved_on"] += steps
        found["messages"] += messages
        by_outcome = outcomes.setdefault(node_id, {})
        by_outcome[outcome] = by_outcome.get(outcome, 0) + steps
    order = list(types) + sorted(set(counts) - set(types))
    return [
        NodeStats(node_id=n, type=types.get(n, "?"), outcomes=outcomes.get(n, {}), **node(n))
        for n in order
    ]
