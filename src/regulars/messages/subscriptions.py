"""Web push subscriptions, made by the snippet on the store's site (regulars-push.js)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from regulars.customers import service as customers
from regulars.errors import ValidationFailed
from regulars.kit import clock, ids
from regulars.messages import repository, vapid
from regulars.messages.models import PushSubscription
from regulars.messages.schemas import PushSubscriptionCreate

SOURCE_NAME = "push"


def subscribe(session: Session, data: PushSubscriptionCreate, *, source: str) -> str:
    """Keep a browser's subscription for the visitor it names (a userId, an anonymousId or
    both: an identify links them, as the tracking API would). Answers the customer id."""
    if not data.user_id and not data.anonymous_id:
        raise ValidationFailed("give userId or anonymousId: whose browser is this?")
    if not data.endpoint.startswith("https://"):
        raise ValidationFailed("endpoint must be an https URL of a push service")
    vapid.validate_subscription_keys(data.keys.p256dh, data.keys.auth)
    identify: dict[str, object] = {"type": "identify", "traits": {}}
    if data.user_id:
        identify["userId"] = data.user_id
    if data.anonymous_id:
        identify["anonymousId"] = data.anonymous_id
    customers.ingest(session, [identify], source=source)
    customer_id = customers.find_by_identity(
        session, user_id=data.user_id, anonymous_id=data.anonymous_id
    )
    assert customer_id is not None, "the identify just stored this visitor's profile"
    existing = repository.get_push_subscription(session, data.endpoint)
    if existing is None:
        existing = PushSubscription(id=ids.new_id(), endpoint=data.endpoint)
        session.add(existing)
    existing.customer_id, existing.p256dh, existing.auth = (
        customer_id,
        data.keys.p256dh,
        data.keys.auth,
    )
    existing.user_agent, existing.created_at = data.user_agent, clock.now()
    session.flush()
    return customer_id


def unsubscribe(session: Session, endpoint: str) -> bool:
    return repository.delete_push_subscriptions(session, {endpoint}) > 0
