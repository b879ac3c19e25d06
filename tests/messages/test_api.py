"""The messages REST API on both databases: templates (versions, errors with their place),
previews with the policy verdict, sending, deliveries, providers and the in-app inbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import Response
from sqlalchemy import func, select

from regulars.config import reset_settings
from regulars.db import session_scope
from regulars.kit import clock
from regulars.messages.models import Delivery
from tests.messages.conftest import (
    T0,
    Api,
    CustomerFactory,
    TemplateFactory,
    deliver_due,
    error_of,
)

pytestmark = pytest.mark.usefixtures("frozen_clock")

SMS_BODY = {"body": "Hi {{ customer.first_name }}, your beans are roasting."}
SHOP = "https://shop.example.com/beans"
# An HTML email with a style sheet: sending inlines the CSS into the elements.
STYLED_HTML = (
    "<html><head><style>p.lead { color: #aa0000; }</style></head><body>"
    '<p class="lead">Hi {{ customer.first_name }}, fresh beans.</p>'
    f'<p><a href="{SHOP}">Shop now</a></p>'
    "</body></html>"
)


def email_source(subject: str, text: str = "Fresh beans") -> dict[str, Any]:
    return {
        "subject": subject,
        "body": (
            "<mjml><mj-body><mj-section><mj-column>"
            f"<mj-text>{text}</mj-text>"
            "</mj-column></mj-section></mj-body></mjml>"
        ),
    }


def put_template(api: Api, key: str, channel: str, body: dict[str, Any]) -> Response:
    response: Response = api.client.put(
        f"/api/templates/{key}/{channel}", json=body, headers=api.write
    )
    return response


def post_message(api: Api, **body: Any) -> dict[str, Any]:
    response = api.client.post("/api/messages", json=body, headers=api.write)
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


def deliveries(api: Api, **params: str | int) -> dict[str, Any]:
    response = api.client.get("/api/deliveries", params=params, headers=api.read)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def delivery(api: Api, delivery_id: str) -> dict[str, Any]:
    response = api.client.get(f"/api/deliveries/{delivery_id}", headers=api.read)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def parsed(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- templates ---


def test_saving_a_template_twice_makes_two_versions(api: Api) -> None:
    first = put_template(
        api, "welcome", "email", {"name": "Welcome", "locales": {"en": email_source("Hi")}}
    )
    assert first.status_code == 200, first.text
    assert first.json()["version"] == 1
    second = put_template(
        api,
        "welcome",
        "email",
        {"name": "Welcome", "locales": {"en": email_source("Hello again")}},
    )
    assert second.status_code == 200, second.text
    assert second.json()["version"] == 2
    assert second.json()["id"] == first.json()["id"]

    found = api.client.get("/api/templates/welcome/email", headers=api.read)
    assert found.status_code == 200
    assert found.json()["version"] == 2
    assert found.json()["locales"]["en"]["subject"] == "Hello again"

    versions = api.client.get("/api/templates/welcome/email/versions", headers=api.read).json()
    assert [(v["version"], v["locales"]["en"]["subject"]) for v in versions] == [
        (1, "Hi"),
        (2, "Hello again"),
    ]


def test_a_deleted_template_is_gone(api: Api) -> None:
    put_template(api, "welcome", "sms", {"name": "Welcome", "locales": {"en": SMS_BODY}})
    gone = api.client.delete("/api/templates/welcome/sms", headers=api.write)
    assert gone.status_code == 204
    assert error_of(api.client.get("/api/templates/welcome/sms", headers=api.read), 404)
    again = api.client.delete("/api/templates/welcome/sms", headers=api.write)
    assert error_of(again, 404)["code"] == "not_found"


def test_a_liquid_syntax_error_names_locale_field_line_and_column(api: Api) -> None:
    broken = "Hi there,\nyour order is on its way.\nTrack it: {{ event.tracking_url | }} today"
    response = put_template(
        api,
        "shipped",
        "sms",
        {"name": "Shipped", "locales": {"en": {"body": "Fine"}, "de": {"body": broken}}},
    )
    error = error_of(response, 422)
    assert error["code"] == "invalid_template"
    [problem] = error["details"]
    assert (problem["locale"], problem["field"], problem["line"]) == ("de", "body", 3)
    # Inside the broken output tag on line 3 (columns are 1-based).
    line = broken.splitlines()[2]
    assert line.index("{{") + 1 <= problem["column"] <= line.index("}}") + 2
    assert "line 3" in error["message"]
    assert error_of(api.client.get("/api/templates/shipped/sms", headers=api.read), 404)


def test_a_liquid_error_in_an_mjml_body_is_placed_in_the_authors_text(api: Api) -> None:
    body = (
        "<mjml><mj-body><mj-section><mj-column>\n"
        "<mj-text>Hello</mj-text>\n"
        "<mj-text>{% if customer.first_name %}Hi{% endiff %}</mj-text>\n"
        "</mj-column></mj-section></mj-body></mjml>"
    )
    response = put_template(
        api, "hello", "email", {"name": "Hello", "locales": {"en": {"subject": "Hi", "body": body}}}
    )
    [problem] = error_of(response, 422)["details"]
    assert (problem["locale"], problem["field"], problem["line"]) == ("en", "body", 3)
    assert 1 <= problem["column"] <= len(body.splitlines()[2]) + 1


def test_an_unknown_content_field_is_named(api: Api) -> None:
    source = {"subjet": "Hello", "body": email_source("x")["body"]}
    response = put_template(api, "hello", "email", {"name": "Hello", "locales": {"en": source}})
    error = error_of(response, 422)
    assert error["code"] == "invalid_template"
    named = [p for p in error["details"] if p["field"] == "subjet"]
    assert len(named) == 1 and named[0]["locale"] == "en"


def test_the_default_locale_needs_content(api: Api) -> None:
    response = put_template(
        api, "hello", "sms", {"name": "Hello", "default_locale": "fr", "locales": {"en": SMS_BODY}}
    )
    error = error_of(response, 422)
    assert {"locale": "fr", "field": "default_locale"}.items() <= error["details"][0].items()


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Hello", "locales": {"en!": SMS_BODY}},
        {"name": "Hello", "default_locale": "english language", "locales": {"en": SMS_BODY}},
    ],
)
def test_a_bad_locale_is_refused(api: Api, body: dict[str, Any]) -> None:
    error = error_of(put_template(api, "hello", "sms", body), 422)
    assert "locale" in error["message"]


def test_saving_a_template_needs_scope_write(api: Api) -> None:
    body = {"name": "Hello", "locales": {"en": SMS_BODY}}
    as_reader = api.client.put("/api/templates/hello/sms", json=body, headers=api.read)
    assert error_of(as_reader, 403)["details"]["needed_scope"] == "write"
    anonymous = api.client.put("/api/templates/hello/sms", json=body)
    assert error_of(anonymous, 401)["code"] == "unauthorized"
    assert error_of(api.client.get("/api/templates/hello/sms", headers=api.read), 404)


# --- previews ---


def test_preview_renders_the_email_the_customer_would_get(
    api: Api, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", email="ada@example.com", first_name="Ada", locale="en-GB")
    template(
        "beans",
        "email",
        {
            "en": {
                "subject": "Fresh beans for {{ customer.first_name }}",
                "body": STYLED_HTML,
                "format": "html",
            }
        },
    )
    response = api.client.post(
        "/api/templates/beans/preview", json={"customer": ada}, headers=api.read
    )
    assert response.status_code == 200, response.text
    preview = response.json()
    assert (preview["channel"], preview["locale"], preview["version"]) == ("email", "en", 1)
    content = preview["content"]
    assert content["subject"] == "Fresh beans for Ada"
    assert '<p class="lead" style="color: #aa0000;">Hi Ada, fresh beans.</p>' in content["html"]
    assert "Hi Ada, fresh beans." in content["text"] and "<p" not in content["text"]
    assert SHOP in content["text"]
    assert preview["verdict"]["decision"] == "send"
    assert deliveries(api)["items"] == []  # a preview stores nothing


def test_preview_falls_back_to_the_language_of_the_customers_locale(
    api: Api, customer: CustomerFactory, template: TemplateFactory
) -> None:
    customer("ada", email="ada@example.com", first_name="Ada", locale="de-AT")
    template(
        "beans",
        "email",
        {
            "en": email_source("Fresh beans, {{ customer.first_name }}"),
            "de": email_source("Frische Bohnen, {{ customer.first_name }}", "Frisch"),
        },
    )
    preview = api.client.post(
        "/api/templates/beans/preview", json={"customer": "ada@example.com"}, headers=api.read
    ).json()
    assert preview["locale"] == "de"
    assert preview["content"]["subject"] == "Frische Bohnen, Ada"
    assert preview["content"]["text"] == "Frisch\n"


def test_preview_refuses_marketing_email_to_an_unsubscribed_customer(
    api: Api, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", email="ada@example.com", first_name="Ada", consents={"email": False})
    template("news", "email", category="marketing", topic="newsletter")
    preview = api.client.post(
        "/api/templates/news/preview", json={"customer": ada}, headers=api.read
    ).json()
    verdict = preview["verdict"]
    assert (verdict["decision"], verdict["reason"], verdict["at"]) == (
        "refuse",
        "unsubscribed",
        None,
    )
    assert preview["content"]["subject"] == "Hello Ada"  # still shown, for the author


def test_preview_defers_marketing_sms_in_the_customers_quiet_hours(
    api: Api, customer: CustomerFactory, template: TemplateFactory, frozen_clock: clock.FrozenClock
) -> None:
    ada = customer(
        "ada", phone="+4915112345678", timezone="Europe/Berlin", consents={"sms": "subscribed"}
    )
    template("flash", "sms", category="marketing")
    # 22:00 UTC on 2 March is 23:00 in Berlin (CET, UTC+1): inside quiet hours 21:00-08:00.
    frozen_clock.set(datetime(2026, 3, 2, 22, 0, tzinfo=UTC))
    preview = api.client.post(
        "/api/templates/flash/preview", json={"customer": ada}, headers=api.read
    ).json()
    verdict = preview["verdict"]
    assert (verdict["decision"], verdict["reason"]) == ("defer", "quiet_hours")
    # 08:00 the next morning in Berlin is 07:00 UTC.
    assert parsed(verdict["at"]) == datetime(2026, 3, 3, 7, 0, tzinfo=UTC)


def test_preview_names_a_missing_variable_instead_of_rendering(
    api: Api, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", phone="+4915112345678")
    template("shipped", "sms", {"en": {"body": "Order {{ event.order_id }} is on its way"}})
    url = "/api/templates/shipped/preview"
    broken = api.client.post(url, json={"customer": ada}, headers=api.read).json()
    assert broken["content"] is None
    assert "event.order_id" in broken["error"]
    given = {"customer": ada, "event": {"order_id": "1001"}}
    fine = api.client.post(url, json=given, headers=api.read).json()
    assert (fine["error"], fine["content"]["body"]) == (None, "Order 1001 is on its way")


def test_preview_of_a_channel_the_template_lacks_is_404(
    api: Api, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", email="ada@example.com", phone="+4915112345678")
    template("beans", "email")
    response = api.client.post(
        "/api/templates/beans/preview", json={"customer": ada, "channel": "sms"}, headers=api.read
    )
    assert "sms" in error_of(response, 404)["message"]
    unknown = api.client.post(
        "/api/templates/nothing/preview", json={"customer": ada}, headers=api.read
    )
    assert error_of(unknown, 404)


# --- sending ---


def test_a_message_is_queued(
    api: Api, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", email="ada@example.com", first_name="Ada")
    template("receipt", "email")
    sent = post_message(api, customer=ada, template="receipt", channel="email")
    assert (sent["status"], sent["channel"], sent["address"]) == (
        "queued",
        "email",
        "ada@example.com",
    )
    assert (sent["template"], sent["template_version"], sent["customer_id"]) == ("receipt", 1, ada)
    assert parsed(sent["created_at"]) == T0


def test_the_same_idempotency_key_answers_the_first_delivery(
    api: Api, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", email="ada@example.com")
    template("receipt", "email")
    body = {"customer": ada, "template": "receipt", "idempotency_key": "order-1001-receipt"}
    first = post_message(api, **body)
    again = post_message(api, **body)
    assert again["id"] == first["id"]
    assert [d["id"] for d in deliveries(api, customer=ada)["items"]] == [first["id"]]
    with session_scope(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 1


def test_auto_channel_takes_the_first_allowed_channel_in_the_configured_order(
    api: Api,
    customer: CustomerFactory,
    template: TemplateFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    both = {"email": "subscribed", "sms": "subscribed"}
    ada = customer("ada", email="ada@example.com", phone="+4915112345678", consents=both)
    bob = customer(
        "bob",
        email="bob@example.com",
        phone="+4915112345679",
        consents={"email": "subscribed", "sms": "unsubscribed"},
    )
    template("offer", "email", category="marketing")
    template("offer", "sms", category="marketing")
    # Default order whatsapp, sms, email: no WhatsApp content, so SMS.
    assert post_message(api, customer=ada, template="offer")["channel"] == "sms"
    # Bob said no to SMS marketing: the next channel in the order.
    assert post_message(api, customer=bob, template="offer")["channel"] == "email"
    monkeypatch.setenv("REGULARS_AUTO_CHANNEL_ORDER", '["email", "sms"]')
    reset_settings()
    assert post_message(api, customer=ada, template="offer")["channel"] == "email"


def test_inline_content_is_sent_on_the_given_channel(api: Api, customer: CustomerFactory) -> None:
    ada = customer("ada", phone="+4915112345678", first_name="Ada")
    sent = post_message(
        api,
        customer=ada,
        channel="sms",
        content={"body": "Code for {{ customer.first_name }}: 4711"},
    )
    assert (sent["status"], sent["channel"], sent["template"]) == ("queued", "sms", None)
    assert delivery(api, sent["id"])["content"]["body"] == "Code for Ada: 4711"


def test_inline_content_needs_a_channel(api: Api, customer: CustomerFactory) -> None:
    ada = customer("ada", phone="+4915112345678")
    response = api.client.post(
        "/api/messages",
        json={"customer": ada, "content": {"body": "Hi"}, "channel": "auto"},
        headers=api.write,
    )
    assert "channel" in error_of(response, 422)["message"]
    assert deliveries(api)["items"] == []


def test_inline_content_with_a_liquid_error_is_422(api: Api, customer: CustomerFactory) -> None:
    ada = customer("ada", phone="+4915112345678")
    response = api.client.post(
        "/api/messages",
        json={"customer": ada, "channel": "sms", "content": {"body": "Hi\n{{ customer.id | }}"}},
        headers=api.write,
    )
    error = error_of(response, 422)
    assert error["code"] == "invalid_template"
    assert (error["details"][0]["field"], error["details"][0]["line"]) == ("body", 2)
    assert deliveries(api)["items"] == []


def test_an_unknown_customer_or_template_is_404(
    api: Api, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", email="ada@example.com")
    template("receipt", "email")
    nobody = api.client.post(
        "/api/messages",
        json={"customer": "nobody@example.com", "template": "receipt"},
        headers=api.write,
    )
    assert "nobody@example.com" in error_of(nobody, 404)["message"]
    missing = api.client.post(
        "/api/messages", json={"customer": ada, "template": "no_such"}, headers=api.write
    )
    assert "no_such" in error_of(missing, 404)["message"]
    assert deliveries(api)["items"] == []


def test_marketing_to_an_unsubscribed_customer_is_recorded_as_suppressed(
    api: Api, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", email="ada@example.com", consents={"email": "unsubscribed"})
    bob = customer("bob", email="bob@example.com")  # never asked
    template("news", "email", category="marketing", topic="newsletter")
    refused = post_message(api, customer=ada, template="news")
    assert refused["status"] == "suppressed"
    assert refused["reason"].startswith("unsubscribed:") and "email" in refused["reason"]
    never_asked = post_message(api, customer=bob, template="news")
    assert never_asked["status"] == "suppressed"
    assert never_asked["reason"].startswith("no_consent:")
    assert deliver_due() == 0  # nothing to send


def test_expires_in_seconds_sets_the_deadline(
    api: Api, customer: CustomerFactory, template: TemplateFactory, frozen_clock: clock.FrozenClock
) -> None:
    ada = customer("ada", email="ada@example.com")
    template("code", "email")
    sent = post_message(api, customer=ada, template="code", expires_in_seconds=600)
    assert parsed(sent["expires_at"]) == T0 + timedelta(minutes=10)
    frozen_clock.advance(timedelta(minutes=11))
    deliver_due()
    assert delivery(api, sent["id"])["status"] == "expired"


def test_a_malformed_json_body_is_422(api: Api) -> None:
    response = api.client.post(
        "/api/messages",
        content=b'{"customer": "ada", "template": ',
        headers={**api.write, "Content-Type": "application/json"},
    )
    assert error_of(response, 422)["code"] == "validation_failed"


def test_an_unknown_body_field_is_named(api: Api, customer: CustomerFactory) -> None:
    ada = customer("ada", email="ada@example.com")
    response = api.client.post(
        "/api/messages",
        json={"customer": ada, "template": "receipt", "idempotencykey": "x"},
        headers=api.write,
    )
    assert "idempotencykey" in error_of(response, 422)["message"]


def test_a_missing_variable_of_a_strict_template_fails_the_delivery(
    api: Api, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", phone="+4915112345678")
    template("shipped", "sms", {"en": {"body": "Order {{ event.order_id }} is on its way"}})
    sent = post_message(api, customer=ada, template="shipped", channel="sms")
    assert sent["status"] == "failed"
    assert "event.order_id" in sent["reason"]
    ok = post_message(api, customer=ada, template="shipped", event={"order_id": "1001"})
    assert delivery(api, ok["id"])["content"]["body"] == "Order 1001 is on its way"
    deliver_due()
    assert delivery(api, sent["id"])["status"] == "failed"  # never handed to a provider


# --- deliveries ---


def test_deliveries_filter_by_customer_channel_status_and_provider(
    api: Api, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", email="ada@example.com", phone="+4915112345678")
    bob = customer("bob", email="bob@example.com")
    template("note", "email")
    template("note", "sms")
    template("news", "email", category="marketing")
    ada_email = post_message(api, customer=ada, template="note", channel="email")["id"]
    ada_sms = post_message(api, customer=ada, template="note", channel="sms")["id"]
    bob_email = post_message(api, customer=bob, template="note", channel="email")["id"]
    bob_news = post_message(api, customer=bob, template="news")["id"]  # suppressed: no consent
    assert deliver_due() == 3

    def ids(**params: str) -> set[str]:
        return {d["id"] for d in deliveries(api, **params)["items"]}

    assert ids(customer=ada) == {ada_email, ada_sms}
    assert ids(customer="bob@example.com") == {bob_email, bob_news}
    assert ids(channel="sms") == {ada_sms}
    assert ids(status="suppressed") == {bob_news}
    assert ids(provider="sandbox") == {ada_email, ada_sms, bob_email}
    assert ids(customer=ada, channel="email") == {ada_email}
    assert error_of(
        api.client.get("/api/deliveries", params={"status": "lost"}, headers=api.read), 422
    )


def test_deliveries_are_paged_newest_first_with_a_cursor(
    api: Api, customer: CustomerFactory, template: TemplateFactory, frozen_clock: clock.FrozenClock
) -> None:
    ada = customer("ada", email="ada@example.com")
    template("note", "email")
    made = []
    for _ in range(3):
        made.append(post_message(api, customer=ada, template="note")["id"])
        frozen_clock.advance(timedelta(seconds=1))
    first = deliveries(api, limit=2)
    assert [d["id"] for d in first["items"]] == [made[2], made[1]]
    assert first["next_cursor"] is not None
    second = deliveries(api, limit=2, cursor=first["next_cursor"])
    assert [d["id"] for d in second["items"]] == [made[0]]
    assert second["next_cursor"] is None
    changed = api.client.get("/api/deliveries", params={"cursor": "bm9wZQ"}, headers=api.read)
    assert error_of(changed, 422)["code"] == "validation_failed"


def test_one_delivery_includes_its_content(
    api: Api, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", phone="+4915112345678", first_name="Ada")
    template("note", "sms")
    sent = post_message(api, customer=ada, template="note")
    assert sent["content"] is None  # lists and the send answer leave it out
    assert deliveries(api)["items"][0]["content"] is None
    content = delivery(api, sent["id"])["content"]
    assert content["body"] == "Hi Ada, our new beans are in."
    assert (content["encoding"], content["segments"]) == ("gsm7", 1)
    assert error_of(api.client.get("/api/deliveries/nope", headers=api.read), 404)


# --- providers ---

TWILIO = {
    "account_sid": "AC" + "0123456789abcdef" * 2,
    "auth_token": "s3cret-token",
    "from_number": "+15005550006",
}


def test_providers_need_scope_admin(api: Api) -> None:
    body = {"channel": "sms", "kind": "twilio_sms", "config": TWILIO}
    assert error_of(api.client.get("/api/providers", headers=api.write), 403)
    as_writer = api.client.put("/api/providers/twilio-main", json=body, headers=api.write)
    assert error_of(as_writer, 403)["details"]["needed_scope"] == "admin"
    assert api.client.get("/api/providers", headers=api.admin).json() == []


def test_a_provider_config_is_checked_against_its_kind(api: Api) -> None:
    no_host = api.client.put(
        "/api/providers/mail",
        json={"channel": "email", "kind": "smtp", "config": {"port": 587}},
        headers=api.admin,
    )
    assert "config.host" in error_of(no_host, 422)["message"]
    unknown = api.client.put(
        "/api/providers/mail",
        json={"channel": "email", "kind": "pigeon", "config": {}},
        headers=api.admin,
    )
    assert "pigeon" in error_of(unknown, 422)["message"]
    wrong_channel = api.client.put(
        "/api/providers/mail",
        json={"channel": "sms", "kind": "smtp", "config": {"host": "smtp.example.com"}},
        headers=api.admin,
    )
    assert "sms" in error_of(wrong_channel, 422)["message"]
    assert api.client.get("/api/providers", headers=api.admin).json() == []


def test_provider_secrets_are_masked(api: Api) -> None:
    saved = api.client.put(
        "/api/providers/twilio-main",
        json={"channel": "sms", "kind": "twilio_sms", "config": TWILIO, "priority": 5},
        headers=api.admin,
    )
    assert saved.status_code == 200, saved.text
    smtp = {
        "host": "smtp.example.com",
        "from_address": "Shop <news@shop.example.com>",
        "username": "shop",
        "password": "hunter2",
    }
    mail = api.client.put(
        "/api/providers/mail",
        json={"channel": "email", "kind": "smtp", "config": smtp},
        headers=api.admin,
    )
    assert mail.status_code == 200, mail.text
    listed = {p["name"]: p for p in api.client.get("/api/providers", headers=api.admin).json()}
    twilio = listed["twilio-main"]
    assert (twilio["kind"], twilio["channel"], twilio["priority"]) == ("twilio_sms", "sms", 5)
    assert twilio["config"]["auth_token"] != TWILIO["auth_token"]
    assert twilio["config"]["account_sid"] == TWILIO["account_sid"]
    assert listed["mail"]["config"]["password"] != "hunter2"
    assert listed["mail"]["config"]["username"] == "shop"
    assert "hunter2" not in str(listed) and "s3cret-token" not in str(listed)
    assert "s3cret-token" not in saved.text


# --- in-app inbox ---


def test_an_inapp_message_lands_in_the_inbox_and_reading_it_opens_it(
    api: Api, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", first_name="Ada")
    template("beans", "inapp")
    sent = post_message(api, customer=ada, template="beans", channel="inapp")
    assert deliver_due() == 1
    inbox = api.client.get(f"/api/customers/{ada}/inbox", headers=api.read).json()
    assert inbox["unread_count"] == 1
    [item] = inbox["items"]
    assert (item["delivery_id"], item["title"], item["read_at"]) == (
        sent["id"],
        "New beans, Ada",
        None,
    )
    assert item["link"] == SHOP
    read = api.client.post(f"/api/customers/{ada}/inbox/read", json={}, headers=api.write)
    assert read.status_code == 200, read.text
    assert read.json()["unread_count"] == 0
    assert parsed(read.json()["items"][0]["read_at"]) == T0
    assert delivery(api, sent["id"])["status"] == "opened"


def test_the_inbox_is_paged_and_marks_only_the_given_messages_read(
    api: Api,
    customer: CustomerFactory,
    template: TemplateFactory,
    frozen_clock: clock.FrozenClock,
) -> None:
    ada = customer("ada", first_name="Ada")
    bob = customer("bob", first_name="Bob")
    template("beans", "inapp")
    for _ in range(3):
        post_message(api, customer=ada, template="beans", channel="inapp")
        post_message(api, customer=bob, template="beans", channel="inapp")
        deliver_due()
        frozen_clock.advance(timedelta(seconds=1))
    inbox = f"/api/customers/{ada}/inbox"
    first = api.client.get(inbox, params={"limit": 2}, headers=api.read).json()
    assert (len(first["items"]), first["unread_count"]) == (2, 3)
    second = api.client.get(
        inbox, params={"limit": 2, "cursor": first["next_cursor"]}, headers=api.read
    ).json()
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    oldest = second["items"][0]
    assert oldest["created_at"] < first["items"][1]["created_at"]
    bobs = api.client.get(f"/api/customers/{bob}/inbox", headers=api.read).json()["items"]
    read = api.client.post(
        f"{inbox}/read", json={"ids": [oldest["id"], bobs[0]["id"]]}, headers=api.write
    ).json()
    assert read["unread_count"] == 2
    assert [i["read_at"] is not None for i in read["items"]] == [False, False, True]
    bob_after = api.client.get(f"/api/customers/{bob}/inbox", headers=api.read).json()
    assert bob_after["unread_count"] == 3  # another customer's message stays unread
    changed = api.client.get(inbox, params={"cursor": "not-a-cursor"}, headers=api.read)
    assert error_of(changed, 422)["code"] == "validation_failed"
