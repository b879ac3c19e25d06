"""The public pages and endpoints of messages on both databases, called as mail clients,
browsers and Twilio call them: no API key, a signed link, a Twilio signature or a write key."""

from __future__ import annotations

import base64
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from regulars.customers import service as customers
from regulars.db import session_scope
from regulars.identity.service import create_source
from regulars.kit import clock
from regulars.messages import links
from regulars.messages.models import PushSubscription, Suppression
from tests.messages.conftest import (
    PUBLIC_URL,
    T0,
    Api,
    CustomerFactory,
    TemplateFactory,
    deliver_due,
    error_of,
    timeline,
)
from tests.messages.twilio_fake import FROM_NUMBER, FakeTwilio, inbound_message

pytestmark = pytest.mark.usefixtures("frozen_clock")

SHOP = "https://shop.example.com/beans"
NEWSLETTER_BODY = (
    "<mjml><mj-body><mj-section><mj-column>"
    "<mj-text>Hi {{ customer.first_name }}, the autumn roast is here.</mj-text>"
    f'<mj-button href="{SHOP}">Shop now</mj-button>'
    '<mj-text><a href="{{ links.unsubscribe }}">Unsubscribe</a></mj-text>'
    "</mj-column></mj-section></mj-body></mjml>"
)
ADA_PHONE = "+4915112345678"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# --- helpers ---


class _Inputs(HTMLParser):
    """The checkboxes of a page: (name, value) -> checked."""

    def __init__(self) -> None:
        super().__init__()
        self.checkboxes: dict[tuple[str, str], bool] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "input" and found.get("type") == "checkbox":
            key = (found.get("name") or "", found.get("value") or "")
            self.checkboxes[key] = "checked" in found


def checkboxes(html: str) -> dict[tuple[str, str], bool]:
    parser = _Inputs()
    parser.feed(html)
    return parser.checkboxes


def path_of(url: str) -> str:
    assert url.startswith(PUBLIC_URL + "/"), url
    return url.removeprefix(PUBLIC_URL)


def consents(api: Api, customer_id: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(channel, topic) -> (status, source)."""
    response = api.client.get(f"/api/customers/{customer_id}/consents", headers=api.read)
    assert response.status_code == 200, response.text
    return {
        (c["channel"], c["topic"]): (c["status"], c["source"]) for c in response.json()["items"]
    }


def delivery(api: Api, delivery_id: str) -> dict[str, Any]:
    response = api.client.get(f"/api/deliveries/{delivery_id}", headers=api.read)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def send(api: Api, **body: Any) -> dict[str, Any]:
    response = api.client.post("/api/messages", json=body, headers=api.write)
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


def tampered(token_url: str) -> str:
    """The URL with one character of the token's payload changed."""
    head, _, token = token_url.rpartition("/")
    changed = ("B" if token[0] != "B" else "C") + token[1:]
    return f"{head}/{changed}"


@pytest.fixture
def ada(customer: CustomerFactory) -> str:
    return customer(
        "ada",
        email="ada@example.com",
        phone=ADA_PHONE,
        first_name="Ada",
        timezone="Europe/Berlin",
        consents={"email": "subscribed", "sms": "subscribed", "email:newsletter": "subscribed"},
    )


@pytest.fixture
def newsletter(api: Api, ada: str, template: TemplateFactory) -> dict[str, Any]:
    """A marketing email about the topic newsletter, sent to Ada through the sandbox."""
    template(
        "autumn",
        "email",
        {"en": {"subject": "Autumn roast, {{ customer.first_name }}", "body": NEWSLETTER_BODY}},
        category="marketing",
        topic="newsletter",
    )
    sent = send(api, customer=ada, template="autumn", channel="email")
    assert sent["status"] == "queued"
    assert deliver_due() == 1
    return delivery(api, sent["id"])


# --- RFC 8058 one-click unsubscribe ---


def test_one_click_post_unsubscribes_from_the_topic(
    api: Api, ada: str, newsletter: dict[str, Any], template: TemplateFactory
) -> None:
    assert newsletter["status"] == "delivered"
    url = links.unsubscribe_url(newsletter["id"])
    fresh = TestClient(api.client.app)  # no cookies, no Authorization
    response = fresh.post(path_of(url), content=b"List-Unsubscribe=One-Click", headers=FORM)
    assert response.status_code == 200, response.text
    assert "unsubscribed" in response.text
    found = consents(api, ada)
    assert found[("email", "newsletter")] == ("unsubscribed", "one_click")
    assert found[("email", "")][0] == "subscribed"  # only what this message was about
    assert delivery(api, newsletter["id"])["status"] == "unsubscribed"
    [event] = timeline(api, ada, "message.unsubscribed")
    assert event["properties"]["delivery_id"] == newsletter["id"]
    # The next newsletter is refused; other marketing email still goes.
    again = send(api, customer=ada, template="autumn")
    assert again["status"] == "suppressed"
    assert again["reason"].startswith("topic_unsubscribed")
    template("offer", "email", category="marketing")
    assert send(api, customer=ada, template="offer")["status"] == "queued"


def test_a_second_one_click_post_changes_nothing_more(
    api: Api, ada: str, newsletter: dict[str, Any]
) -> None:
    path = path_of(links.unsubscribe_url(newsletter["id"]))
    for _ in range(2):
        response = api.client.post(path, content=b"List-Unsubscribe=One-Click", headers=FORM)
        assert response.status_code == 200, response.text
    assert len(timeline(api, ada, "message.unsubscribed")) == 1
    history = api.client.get(f"/api/customers/{ada}/export", headers=api.admin).json()
    newsletter_changes = [c for c in history["consent_history"] if c["topic"] == "newsletter"]
    assert [c["status"] for c in newsletter_changes] == ["subscribed", "unsubscribed"]


def test_get_on_the_unsubscribe_link_only_asks(
    api: Api, ada: str, newsletter: dict[str, Any]
) -> None:
    url = links.unsubscribe_url(newsletter["id"])
    page = api.client.get(path_of(url))
    assert page.status_code == 200
    assert '<form method="post">' in page.text
    assert consents(api, ada)[("email", "newsletter")][0] == "subscribed"
    assert delivery(api, newsletter["id"])["status"] == "delivered"
    assert timeline(api, ada, "message.unsubscribed") == []


def test_a_tampered_unsubscribe_link_changes_nothing(
    api: Api, ada: str, newsletter: dict[str, Any]
) -> None:
    url = tampered(links.unsubscribe_url(newsletter["id"]))
    response = api.client.post(path_of(url), content=b"List-Unsubscribe=One-Click", headers=FORM)
    assert response.status_code == 403
    assert "text/html" in response.headers["content-type"]
    assert consents(api, ada)[("email", "newsletter")][0] == "subscribed"
    assert delivery(api, newsletter["id"])["status"] == "delivered"


def test_the_sent_email_links_to_its_own_unsubscribe_url(newsletter: dict[str, Any]) -> None:
    html = newsletter["content"]["html"]
    assert f'href="{links.unsubscribe_url(newsletter["id"])}"' in html


# --- opens and clicks ---


def test_the_open_pixel_records_the_open(api: Api, ada: str, newsletter: dict[str, Any]) -> None:
    pixel = links.open_url(newsletter["id"])
    assert f'src="{pixel}"' in newsletter["content"]["html"]
    response = api.client.get(path_of(pixel))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content.startswith(b"GIF89a")
    found = delivery(api, newsletter["id"])
    assert (found["status"], found["opened_at"]) == ("opened", "2026-03-02T10:00:00Z")  # T0
    [event] = timeline(api, ada, "message.opened")
    assert event["properties"]["delivery_id"] == newsletter["id"]


def test_a_bad_pixel_is_still_an_image_and_records_nothing(
    api: Api, ada: str, newsletter: dict[str, Any]
) -> None:
    for url in (tampered(links.open_url(newsletter["id"])), f"{PUBLIC_URL}/m/o/garbage.gif"):
        response = api.client.get(path_of(url))
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/gif"
    assert delivery(api, newsletter["id"])["status"] == "delivered"
    assert timeline(api, ada, "message.opened") == []


def test_links_in_the_email_go_through_the_click_redirect(
    api: Api, ada: str, newsletter: dict[str, Any], frozen_clock: clock.FrozenClock
) -> None:
    html = newsletter["content"]["html"]
    click = links.click_url(newsletter["id"], SHOP)
    assert f'href="{click}"' in html
    assert f'href="{SHOP}"' not in html
    frozen_clock.advance(timedelta(minutes=5))
    response = api.client.get(path_of(click), follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == SHOP
    found = delivery(api, newsletter["id"])
    assert found["status"] == "clicked"
    clicked_at = (T0 + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    assert found["opened_at"] == clicked_at and found["clicked_at"] == clicked_at
    [event] = timeline(api, ada, "message.clicked")
    assert event["properties"]["url"] == SHOP


def test_a_tampered_click_link_redirects_nowhere(
    api: Api, ada: str, newsletter: dict[str, Any]
) -> None:
    url = tampered(links.click_url(newsletter["id"], SHOP))
    response = api.client.get(path_of(url), follow_redirects=False)
    assert response.status_code == 403
    assert "location" not in response.headers
    assert delivery(api, newsletter["id"])["status"] == "delivered"


# --- the preference centre ---


def preferences_path(customer_id: str) -> str:
    return path_of(links.preferences_url(customer_id, now=clock.now()))


def save_preferences(api: Api, path: str, form: list[tuple[str, str]]) -> Response:
    """POST the form as a browser does (a field may repeat: channel=email&channel=sms)."""
    response: Response = api.client.post(path, content=urlencode(form).encode(), headers=FORM)
    return response


def test_the_preference_centre_shows_reachable_channels_and_topics(
    api: Api, ada: str, template: TemplateFactory
) -> None:
    template("offers", "email", category="marketing", topic="offers")
    page = api.client.get(preferences_path(ada))
    assert page.status_code == 200
    assert "Ada" in page.text
    assert checkboxes(page.text) == {
        ("channel", "email"): True,
        ("channel", "sms"): True,
        ("channel", "whatsapp"): False,  # reachable by phone, never agreed
        ("topic", "newsletter"): True,
        ("topic", "offers"): True,  # never set: follows the channel
    }


def test_the_preference_centre_escapes_the_customers_name(
    api: Api, customer: CustomerFactory
) -> None:
    mallory = customer("mallory", email="m@example.com", first_name="<script>alert(1)</script>")
    page = api.client.get(preferences_path(mallory))
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text
    assert "&lt;script&gt;alert(1)" in page.text


def test_a_preferences_link_follows_a_merge(
    api: Api, template: TemplateFactory, customer: CustomerFactory
) -> None:
    """A link sent to a visitor known by an anonymous id still works once an identify
    merges that profile into the customer's."""
    with session_scope() as session:
        visitor = {
            "type": "identify",
            "anonymousId": "anon-7",
            "traits": {"email": "ada@example.com", "consents": {"email": "subscribed"}},
            "messageId": "visit-1",
        }
        customers.ingest(session, [visitor], source="website")
        anonymous = customers.find_by_identity(session, user_id=None, anonymous_id="anon-7")
    assert anonymous is not None
    path = preferences_path(anonymous)
    ada = customer("ada", first_name="Ada", traits={"phone": ADA_PHONE})
    with session_scope() as session:
        link = {"type": "identify", "userId": "ada", "anonymousId": "anon-7", "messageId": "m"}
        customers.ingest(session, [link], source="website")
        assert customers.find_by_identity(session, user_id=None, anonymous_id="anon-7") == ada
    page = api.client.get(path)
    assert page.status_code == 200, page.text
    assert checkboxes(page.text)[("channel", "email")] is True
    saved = save_preferences(api, path, [("channel", "sms")])
    assert saved.status_code == 200, saved.text
    assert consents(api, ada)[("email", "")] == ("unsubscribed", "preference_centre")


def test_unchecking_email_unsubscribes_from_email(api: Api, ada: str) -> None:
    form = [("channel", "sms"), ("topic", "newsletter")]
    response = save_preferences(api, preferences_path(ada), form)
    assert response.status_code == 200, response.text
    assert checkboxes(response.text)[("channel", "email")] is False
    found = consents(api, ada)
    assert found[("email", "")] == ("unsubscribed", "preference_centre")
    assert found[("sms", "")] == ("subscribed", "tests")
    assert found[("email", "newsletter")] == ("subscribed", "tests")


def test_a_pause_refuses_marketing_until_it_ends(
    api: Api, ada: str, template: TemplateFactory, frozen_clock: clock.FrozenClock
) -> None:
    template("offer", "email", category="marketing")
    template("receipt", "email")
    form = [("channel", "email"), ("channel", "sms"), ("topic", "newsletter"), ("pause_days", "30")]
    response = save_preferences(api, preferences_path(ada), form)
    assert response.status_code == 200, response.text
    assert "Paused until 01 April 2026" in response.text  # 2 March + 30 days
    refused = send(api, customer=ada, template="offer")
    assert (refused["status"], refused["reason"].split(":")[0]) == ("suppressed", "paused")
    assert send(api, customer=ada, template="receipt")["status"] == "queued"
    frozen_clock.advance(timedelta(days=30))
    assert send(api, customer=ada, template="offer")["status"] == "queued"


def test_a_pause_of_zero_days_lifts_the_pause(
    api: Api, ada: str, template: TemplateFactory
) -> None:
    template("offer", "email", category="marketing")
    keep = [("channel", "email"), ("channel", "sms"), ("topic", "newsletter")]
    save_preferences(api, preferences_path(ada), [*keep, ("pause_days", "7")])
    assert send(api, customer=ada, template="offer")["status"] == "suppressed"
    response = save_preferences(api, preferences_path(ada), [*keep, ("pause_days", "0")])
    assert "Paused until" not in response.text
    assert send(api, customer=ada, template="offer")["status"] == "queued"


def test_unsubscribe_all_unsubscribes_every_channel(api: Api, ada: str) -> None:
    response = save_preferences(api, preferences_path(ada), [("unsubscribe_all", "1")])
    assert response.status_code == 200, response.text
    found = consents(api, ada)
    assert found[("email", "")] == ("unsubscribed", "preference_centre")
    assert found[("sms", "")] == ("unsubscribed", "preference_centre")
    assert found[("email", "newsletter")] == ("unsubscribed", "preference_centre")
    assert not any(status == "subscribed" for status, _source in found.values())


def test_an_expired_preferences_link_is_410(
    api: Api, ada: str, frozen_clock: clock.FrozenClock
) -> None:
    path = preferences_path(ada)
    frozen_clock.advance(timedelta(days=60))  # REGULARS_LINK_TTL_DAYS, 60 by default
    page = api.client.get(path)
    assert page.status_code == 410
    assert "expired" in page.text
    posted = save_preferences(api, path, [("unsubscribe_all", "1")])
    assert posted.status_code == 410
    assert consents(api, ada)[("email", "")][0] == "subscribed"
    frozen_clock.advance(timedelta(seconds=-1))
    assert api.client.get(path).status_code == 200


@pytest.mark.parametrize("pause", ["soon", "-3", "366"])
def test_a_bad_pause_changes_nothing(api: Api, ada: str, pause: str) -> None:
    before = consents(api, ada)
    response = save_preferences(api, preferences_path(ada), [("pause_days", pause)])
    assert 400 <= response.status_code < 500
    assert "text/html" in response.headers["content-type"]
    assert "pause" in response.text
    assert consents(api, ada) == before


def test_a_tampered_preferences_link_is_403(api: Api, ada: str) -> None:
    path = tampered(preferences_path(ada))
    assert api.client.get(path).status_code == 403
    assert save_preferences(api, path, [("unsubscribe_all", "1")]).status_code == 403
    assert consents(api, ada)[("email", "")][0] == "subscribed"


# --- Twilio ---

INBOUND = "/webhooks/twilio/twilio-main/inbound"
STATUS = "/webhooks/twilio/twilio-main/status"


@pytest.fixture
def fake_twilio(api: Api) -> Iterator[FakeTwilio]:
    """The fake Twilio API, and a provider twilio-main of kind twilio_sms that uses it."""
    with FakeTwilio() as fake:
        response = api.client.put(
            "/api/providers/twilio-main",
            json={"channel": "sms", "kind": "twilio_sms", "config": fake.config()},
            headers=api.admin,
        )
        assert response.status_code == 200, response.text
        yield fake


def text_in(api: Api, fake: FakeTwilio, sender: str, body: str) -> Response:
    form, headers = inbound_message(
        PUBLIC_URL + INBOUND,
        auth_token=fake.auth_token,
        account_sid=fake.account_sid,
        from_=sender,
        to=FROM_NUMBER,
        body=body,
    )
    response: Response = api.client.post(INBOUND, data=form, headers=headers)
    return response


def reply_of(response: Response) -> str | None:
    """The text of the TwiML <Message>, None for an empty <Response/>."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.text)
    assert root.tag == "Response"
    message = root.find("Message")
    return None if message is None else message.text


def suppressed(address: str) -> str | None:
    with session_scope(readonly=True) as session:
        found = session.scalars(select(Suppression).where(Suppression.address == address)).all()
        return found[0].reason if found else None


def test_stop_unsubscribes_and_suppresses_the_number(
    api: Api, ada: str, fake_twilio: FakeTwilio, template: TemplateFactory
) -> None:
    template("flash", "sms", category="marketing")
    template("pickup", "sms")
    answer = reply_of(text_in(api, fake_twilio, ADA_PHONE, "STOP"))
    assert answer is not None and "unsubscribed" in answer
    assert consents(api, ada)[("sms", "")][0] == "unsubscribed"
    assert suppressed(ADA_PHONE) is not None
    marketing = send(api, customer=ada, template="flash")
    assert (marketing["channel"], marketing["status"]) == ("sms", "suppressed")
    transactional = send(api, customer=ada, template="pickup")
    assert transactional["status"] == "suppressed"
    assert transactional["reason"].startswith("suppressed")


def test_start_resubscribes(
    api: Api, ada: str, fake_twilio: FakeTwilio, template: TemplateFactory
) -> None:
    template("pickup", "sms")
    reply_of(text_in(api, fake_twilio, ADA_PHONE, "STOP"))
    answer = reply_of(text_in(api, fake_twilio, ADA_PHONE, "START"))
    assert answer is not None and "resubscribed" in answer
    assert consents(api, ada)[("sms", "")][0] == "subscribed"
    assert suppressed(ADA_PHONE) is None
    assert send(api, customer=ada, template="pickup")["status"] == "queued"


def test_help_is_answered(api: Api, ada: str, fake_twilio: FakeTwilio) -> None:
    answer = reply_of(text_in(api, fake_twilio, ADA_PHONE, "HELP"))
    assert answer is not None and "STOP" in answer and "START" in answer
    assert consents(api, ada)[("sms", "")][0] == "subscribed"


def test_any_other_text_is_kept_on_the_timeline_without_a_reply(
    api: Api, ada: str, fake_twilio: FakeTwilio
) -> None:
    assert reply_of(text_in(api, fake_twilio, ADA_PHONE, "Where is my order?")) is None
    [event] = timeline(api, ada, "message.received")
    assert event["properties"]["body"] == "Where is my order?"
    assert event["properties"]["channel"] == "sms"
    assert consents(api, ada)[("sms", "")][0] == "subscribed"


def test_a_text_from_an_unknown_number_makes_a_profile(api: Api, fake_twilio: FakeTwilio) -> None:
    stranger = "+4917612345678"
    assert reply_of(text_in(api, fake_twilio, stranger, "Hi, are you open today?")) is None
    with session_scope(readonly=True) as session:
        made = customers.find_by_phone(session, stranger)
    assert made is not None
    profile = api.client.get(f"/api/customers/{made}", headers=api.read).json()
    assert profile["phone"] == stranger
    [event] = timeline(api, made, "message.received")
    assert event["properties"]["body"] == "Hi, are you open today?"


def test_a_wrong_signature_is_401_and_stores_nothing(
    api: Api, ada: str, fake_twilio: FakeTwilio
) -> None:
    stranger = "+4917612345678"
    for sender in (ADA_PHONE, stranger):
        form, headers = inbound_message(
            PUBLIC_URL + INBOUND,
            auth_token="not-the-token",
            account_sid=fake_twilio.account_sid,
            from_=sender,
            to=FROM_NUMBER,
            body="STOP",
        )
        response = api.client.post(INBOUND, data=form, headers=headers)
        assert error_of(response, 401)["code"] == "unauthorized"
    unsigned = api.client.post(INBOUND, data={"From": ADA_PHONE, "Body": "STOP"})
    assert error_of(unsigned, 401)
    assert consents(api, ada)[("sms", "")][0] == "subscribed"
    assert suppressed(ADA_PHONE) is None
    assert timeline(api, ada, "message.received") == []
    with session_scope(readonly=True) as session:
        assert customers.find_by_phone(session, stranger) is None


def test_a_signature_for_another_url_is_refused(
    api: Api, ada: str, fake_twilio: FakeTwilio
) -> None:
    form, headers = inbound_message(
        PUBLIC_URL + "/webhooks/twilio/other/inbound",
        auth_token=fake_twilio.auth_token,
        account_sid=fake_twilio.account_sid,
        from_=ADA_PHONE,
        to=FROM_NUMBER,
        body="STOP",
    )
    assert error_of(api.client.post(INBOUND, data=form, headers=headers), 401)
    assert consents(api, ada)[("sms", "")][0] == "subscribed"


def test_status_callbacks_move_the_delivery(
    api: Api, ada: str, fake_twilio: FakeTwilio, template: TemplateFactory
) -> None:
    template("pickup", "sms")
    sent = send(api, customer=ada, template="pickup")
    assert deliver_due() == 1
    found = delivery(api, sent["id"])
    assert (found["status"], found["provider"]) == ("sent", "twilio-main")
    sid = found["provider_message_id"]
    assert sid in fake_twilio.messages
    # Twilio was told to call our status webhook; the fake calls it as Twilio would.
    response = fake_twilio.status_callback(sid, "delivered", client=api.client)
    assert response.status_code == 204, response.text
    found = delivery(api, sent["id"])
    assert found["status"] == "delivered"
    assert found["delivered_at"] is not None
    assert suppressed(ADA_PHONE) is None


def test_an_undeliverable_number_bounces_and_is_suppressed(
    api: Api, ada: str, fake_twilio: FakeTwilio, template: TemplateFactory
) -> None:
    template("pickup", "sms")
    sent = send(api, customer=ada, template="pickup")
    deliver_due()
    sid = delivery(api, sent["id"])["provider_message_id"]
    response = fake_twilio.status_callback(
        sid, "undelivered", PUBLIC_URL + STATUS, error_code=30005, client=api.client
    )
    assert response.status_code == 204, response.text
    found = delivery(api, sent["id"])
    assert found["status"] == "bounced"
    assert "30005" in found["reason"]
    assert suppressed(ADA_PHONE) == "hard_bounce"
    assert send(api, customer=ada, template="pickup")["status"] == "suppressed"


def test_a_status_callback_with_a_wrong_signature_changes_nothing(
    api: Api, ada: str, fake_twilio: FakeTwilio, template: TemplateFactory
) -> None:
    template("pickup", "sms")
    sent = send(api, customer=ada, template="pickup")
    deliver_due()
    sid = delivery(api, sent["id"])["provider_message_id"]
    form = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30005"}
    headers = {"X-Twilio-Signature": base64.b64encode(os.urandom(20)).decode()}
    assert error_of(api.client.post(STATUS, data=form, headers=headers), 401)
    assert delivery(api, sent["id"])["status"] == "sent"
    assert suppressed(ADA_PHONE) is None


# --- web push subscriptions ---


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def browser_keys() -> dict[str, str]:
    """What a browser's PushSubscription.toJSON() has in `keys`: a P-256 public point and
    a 16-byte auth secret, base64url without padding."""
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    )
    return {"p256dh": b64url(point), "auth": b64url(os.urandom(16))}


ENDPOINT = "https://fcm.googleapis.com/fcm/send/dJ2kz0M3:APA91bH"


@pytest.fixture
def write_key(api: Api) -> str:
    with session_scope() as session:
        return create_source(session, "website").write_key


def basic(write_key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


def subscriptions() -> list[tuple[str, str, str]]:
    with session_scope(readonly=True) as session:
        rows = session.scalars(select(PushSubscription)).all()
        return [(s.customer_id, s.endpoint, s.p256dh) for s in rows]


def test_a_browser_subscription_is_kept_for_the_visitor(api: Api, write_key: str) -> None:
    with session_scope() as session:
        visit = {"type": "page", "anonymousId": "anon-7", "name": "Home", "messageId": "p-1"}
        customers.ingest(session, [visit], source="website")
        visitor = customers.find_by_identity(session, user_id=None, anonymous_id="anon-7")
    assert visitor is not None
    keys = browser_keys()
    body = {"endpoint": ENDPOINT, "keys": keys, "expirationTime": None, "anonymousId": "anon-7"}
    response = api.client.post("/push/subscriptions", json=body, headers=basic(write_key))
    assert response.status_code == 201, response.text
    assert response.json() == {"customer_id": visitor}
    assert response.headers["access-control-allow-origin"] == "*"
    assert subscriptions() == [(visitor, ENDPOINT, keys["p256dh"])]


@pytest.mark.parametrize(
    "keys",
    [
        {"p256dh": b64url(b"\x04" + os.urandom(64)), "auth": b64url(os.urandom(16))},
        {"p256dh": browser_keys()["p256dh"], "auth": b64url(os.urandom(8))},
        {"p256dh": "not base64 at all!", "auth": b64url(os.urandom(16))},
    ],
    ids=["not-on-the-curve", "short-auth", "not-base64"],
)
def test_bad_subscription_keys_are_422(api: Api, write_key: str, keys: dict[str, str]) -> None:
    body = {"endpoint": ENDPOINT, "keys": keys, "anonymousId": "anon-7"}
    response = api.client.post("/push/subscriptions", json=body, headers=basic(write_key))
    assert error_of(response, 422)
    assert subscriptions() == []


def test_a_subscription_needs_a_write_key(api: Api) -> None:
    body = {"endpoint": ENDPOINT, "keys": browser_keys(), "anonymousId": "anon-7"}
    anonymous = api.client.post("/push/subscriptions", json=body)
    assert error_of(anonymous, 401)
    # The script on the store's site can read why (the answer allows any origin).
    assert anonymous.headers["access-control-allow-origin"] == "*"
    unknown = api.client.post("/push/subscriptions", json=body, headers=basic("wk_nope"))
    assert error_of(unknown, 401)
    assert subscriptions() == []


def test_a_subscription_that_is_not_an_object_is_422(api: Api, write_key: str) -> None:
    response = api.client.post("/push/subscriptions", json=[ENDPOINT], headers=basic(write_key))
    error = error_of(response, 422)
    assert error["message"].startswith("Input should be")
    assert response.headers["access-control-allow-origin"] == "*"


def test_a_plain_http_endpoint_is_422(api: Api, write_key: str) -> None:
    body = {
        "endpoint": "http://push.example.com/send/1",
        "keys": browser_keys(),
        "anonymousId": "anon-7",
    }
    response = api.client.post("/push/subscriptions", json=body, headers=basic(write_key))
    assert "https" in error_of(response, 422)["message"]
    assert subscriptions() == []


def test_the_subscription_preflight_allows_any_site(api: Api) -> None:
    response = api.client.options(
        "/push/subscriptions",
        headers={
            "Origin": "https://shop.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code in (200, 204)
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed


@pytest.mark.parametrize("name", ["regulars-push", "regulars-sw"])
def test_the_push_scripts_are_javascript(api: Api, name: str) -> None:
    response = api.client.get(f"/push/{name}.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "function" in response.text or "=>" in response.text
    assert api.client.get("/push/other.js").status_code == 404
