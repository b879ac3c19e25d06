"""GDPR: the export holds every message sent to the customer, with what it said."""

from __future__ import annotations

import pytest

from tests.messages.conftest import Api, CustomerFactory, TemplateFactory, deliver_due

pytestmark = pytest.mark.usefixtures("frozen_clock")


def test_export_lists_deliveries_with_their_content_and_the_inbox(
    api: Api, customer: CustomerFactory, template: TemplateFactory
) -> None:
    template("note", "inapp", {"en": {"title": "Hello {{ customer.first_name }}", "body": "Hi"}})
    ada = customer("ada", email="ada@example.com", first_name="Ada")
    sent = api.client.post(
        "/api/messages", json={"customer": ada, "template": "note"}, headers=api.write
    ).json()
    assert deliver_due() == 1

    answer = api.client.get(f"/api/customers/{ada}/export", headers=api.admin)

    assert answer.status_code == 200, answer.text
    held = answer.json()["held_elsewhere"]
    assert [(d["id"], d["content"]["title"]) for d in held["deliveries"]] == [
        (sent["id"], "Hello Ada")
    ]
    assert [m["title"] for m in held["inbox"]] == ["Hello Ada"]
    assert held["push_subscriptions"] == []
    assert "segment_history" in held
