"""The in-app inbox: messages kept per customer, with an unread count and mark-as-read."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy.orm import Session

from regulars.errors import ValidationFailed
from regulars.kit import clock
from regulars.kit.pagination import decode_cursor, encode_cursor
from regulars.messages import feedback, repository
from regulars.messages.schemas import InboxItem, InboxPage


def page(session: Session, customer_id: str, *, cursor: str | None, limit: int) -> InboxPage:
    """Newest first; `cursor` is the `next_cursor` of the page before (a changed one: 422)."""
    before = None
    if cursor is not None:
        (before,) = decode_cursor(cursor, 1)
        if not isinstance(before, str):
            raise ValidationFailed("cursor is not valid: pass next_cursor back unchanged")
    rows = repository.list_inbox(session, customer_id, before_id=before, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return InboxPage(
        items=[
            InboxItem(
                id=r.id,
                delivery_id=r.delivery_id,
                title=r.title,
                body=r.body,
                link=r.link,
                created_at=r.created_at,
                read_at=r.read_at,
            )
            for r in rows
        ],
        unread_count=repository.unread_count(session, customer_id),
        next_cursor=encode_cursor(rows[-1].id) if more else None,
    )


def mark_read(session: Session, customer_id: str, message_ids: Collection[str] | None) -> int:
    """Mark messages read (all when None); reading one counts as opening its delivery."""
    delivery_ids = repository.mark_read(
        session, customer_id, message_ids=message_ids, at=clock.now()
    )
    for delivery_id in delivery_ids:
        feedback.opened(session, delivery_id)
    return len(delivery_ids)
