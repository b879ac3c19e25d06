"""A profile merged into another keeps its messages: deliveries, inbox, push subscriptions
and the unsubscribe links already sent still work."""

from __future__ import annotations

import pytest

from regulars.customers import service as customers
from regulars.db import session_scope
from regulars.kit import clock
from regulars.messages import links, repository
from regulars.messages.models import DeliveryStatus
from tests.messages.conftest import Api, CustomerFactory, TemplateFactory, deliver_due

pytestmark = pytest.mark.usefixtures("frozen_clock")


def _identify(**ids: str) -> None:
    message = {"type": "identify", "messageId": f"merge-{sorted(ids.items())}", **ids}
    message["timestamp"] = clock.now().isoformat()
    with session_scope() as session:
        assert customers.ingest(session, [message], source="tests").rejected == []


def test_unsubscribe_link_sent_before_a_merge_still_unsubscribes_the_survivor(
    api: Api, template: TemplateFactory
) -> None:
    template("news", "email", category="marketing", topic="newsletter")
    template("note", "inapp")
    with session_scope() as session:
        customers.ingest(
            session,
            [
                {
                    "type": "identify",
                    "anonymousId": "anon-1",
                    "messageId": "anon-identify",
                    "timestamp": clock.now().isoformat(),
                    "traits": {
                        "email": "guest@example.com",
                        "consents": {"email": "subscribed", "email:newsletter": "subscribed"},
                    },
                }
            ],
            source="tests",
        )
        guest = customers.find_by_identity(session, user_id=None, anonymous_id="anon-1")
    assert guest is not None
    sent = api.client.post(
        "/api/messages", json={"customer": guest, "template": "news"}, headers=api.write
    ).json()
    note = api.client.post(
        "/api/messages", json={"customer": guest, "template": "note"}, headers=api.write
    ).json()
    assert deliver_due() == 2

    _identify(userId="u-1")
    _identify(userId="u-1", anonymousId="anon-1")  # proves both are one person: a merge

    with session_scope() as session:
        survivor = customers.find_by_identity(session, user_id="u-1", anonymous_id=None)
        assert survivor is not None and survivor != guest
        moved = repository.get_deliveries(session, [sent["id"], note["id"]])
        assert {d.customer_id for d in moved.values()} == {survivor}
        assert [
            m.customer_id for m in repository.list_inbox(session, survivor, before_id=None, limit=5)
        ] == [survivor]

    answer = api.client.post(
        links.unsubscribe_url(sent["id"]),
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200, answer.text
    answer = api.client.get(f"/api/customers/{survivor}/consents", headers=api.read)
    consents = answer.json()["items"]
    newsletter = [c for c in consents if c["channel"] == "email" and c["topic"] == "newsletter"]
    assert [c["status"] for c in newsletter] == ["unsubscribed"]
    delivery = api.client.get(f"/api/deliveries/{sent['id']}", headers=api.read).json()
    assert delivery["status"] == DeliveryStatus.UNSUBSCRIBED


def test_erasing_a_customer_deletes_their_deliveries(
    api: Api, customer: CustomerFactory, template: TemplateFactory
) -> None:
    template("note", "inapp")
    ada = customer("ada", email="ada@example.com")
    sent = api.client.post(
        "/api/messages", json={"customer": ada, "template": "note"}, headers=api.write
    ).json()
    assert deliver_due() == 1
    erased = api.client.delete(f"/api/customers/{ada}", headers=api.admin)
    assert erased.status_code == 200, erased.text
    assert api.client.get(f"/api/deliveries/{sent['id']}", headers=api.read).status_code == 404
