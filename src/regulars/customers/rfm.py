"""RFM scores: how recently, how often and for how much each customer ordered, as quintiles.

Among the customers with at least one order (the scored customers), each of recency
(`last_order_at`), frequency (`orders_count`) and monetary value (`revenue_total_cents`) is
scored 1 (lowest fifth) to 5 (highest fifth; for recency, the most recent):

    score = 1 + floor(5 x (scored customers with a strictly lower value) / scored customers)

Equal values get equal scores (a tie takes the score of its lowest-placed member, so a
tie across a quintile boundary stays in the lower one), and nothing depends on customer
ids: with distinct values the fifths are equal to within one customer. Customers without
an order have no scores (NULL). Scores follow the facts as stored: refunds do not lower
`orders_count`, and `revenue_total_cents` is what the orders said.

Scores are relative, so they are refreshed for everyone at once on a schedule (the
`segments.refresh_rfm` job): one set-based read of the scores that changed, then a write of
a chunk of customers per transaction, so ingestion never waits for the whole refresh
(`refresh_rfm` does the same read and write in the caller's one transaction, for the demo
and tests). The
segments domain reads them on its own schedule; a refresh publishes no change events.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from regulars.customers import repository
from regulars.customers.repository import RfmScores

log = logging.getLogger(__name__)


def refresh_rfm(session: Session, *, now: datetime) -> int:
    """Recompute every customer's RFM scores as of `now`; answer how many customers' scores
    changed. Flushes, never commits: the caller's transaction holds the whole refresh."""
    session.flush()
    changes = repository.rfm_score_changes(session)
    repository.write_rfm_scores(session, changes)
    log.info("RFM scores refreshed at %s: %d customers changed", now.isoformat(), len(changes))
    return len(changes)


def rfm_score_changes(session: Session) -> list[RfmScores]:
    """(customer id, recency, frequency, monetary) of every customer whose scores would
    change now, read without locks; store them with `write_rfm_scores`, a chunk per
    transaction."""
    return repository.rfm_score_changes(session)


def write_rfm_scores(session: Session, scores: Sequence[RfmScores]) -> None:
    """Store a chunk of fresh scores (from `rfm_score_changes`)."""
    repository.write_rfm_scores(session, scores)
