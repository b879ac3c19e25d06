"""The staff pages of messages on both databases: templates (editor, live preview for a
customer, save), broadcasts, the deliveries log, the sandbox outbox, and the providers and
policies of Settings, through a signed-in TestClient."""

from __future__ import annotations

import html
import json
import math
import re
from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from regulars.db import session_scope
from regulars.identity.models import Role
from regulars.jobs.service import Registry
from regulars.messages import broadcasts, service, tasks
from regulars.messages.models import MessageChannel
from regulars.messages.schemas import ProviderWrite
from regulars.segments import service as segments
from regulars.segments.schemas import SegmentCreate
from regulars.worker import Worker
from tests.messages.conftest import T0, CustomerFactory, TemplateFactory, deliver_due
from tests.staff import signed_in_as

pytestmark = pytest.mark.usefixtures("frozen_clock")

MJML = (
    "<mjml><mj-body><mj-section><mj-column>"
    "<mj-text>Dear {{ customer.first_name }}, your beans shipped.</mj-text>"
    "</mj-column></mj-section></mj-body></mjml>"
)


def ada(customer: CustomerFactory) -> str:
    return customer(
        "ada",
        email="ada@example.com",
        phone="+4915112345678",
        first_name="Ada",
        consents={"email": "subscribed", "sms": "subscribed"},
    )


def version_of(key: str, channel: MessageChannel) -> int | None:
    with session_scope(readonly=True) as session:
        found = service.templates.get(session, key, channel)
    return None if found is None else found.version


def email_form(token: str, **fields: str) -> dict[str, str]:
    return {
        "csrf_token": token,
        "name": "Order shipped",
        "category": "transactional",
        "locale": "en",
        "default_locale": "en",
        "strict": "on",
        "f_subject": "Shipped, {{ customer.first_name }}",
        "f_format": "mjml",
        "f_body": MJML,
        **fields,
    }


# --- templates ---


def test_template_list_shows_each_key_with_channels_versions_and_locales(
    client: TestClient, template: TemplateFactory
) -> None:
    template("order_shipped", "email")
    template("order_shipped", "email")
    template("order_shipped", "sms", {"en": {"body": "Hi"}, "de": {"body": "Hallo"}})
    signed_in_as(client, Role.ANALYST)

    page = client.get("/messages/templates")

    assert page.status_code == 200
    assert "order_shipped" in page.text
    assert 'href="/messages/templates/order_shipped/email"' in page.text
    assert "sms: de, en" in page.text
    assert "v2" in page.text
    assert "New template" not in page.text  # an analyst changes nothing


def test_email_preview_shows_the_customers_name_the_sender_and_the_verdict(
    client: TestClient, customer: CustomerFactory
) -> None:
    ada(customer)
    token = signed_in_as(client, Role.AGENT)

    answer = client.post(
        "/messages/templates/order_shipped/email/preview",
        data=email_form(token, customer="ada@example.com"),
    )

    assert answer.status_code == 200, answer.text
    assert "Shipped, Ada" in answer.text
    frame = re.search(r'<iframe class="email" sandbox [^>]*srcdoc="([^"]*)"', answer.text)
    assert frame is not None
    assert "Dear Ada, your beans shipped." in html.unescape(frame.group(1))
    assert "hello@regulars.localhost" in answer.text  # the From of REGULARS_EMAIL_FROM
    assert "would be sent" in answer.text
    assert "<html" not in answer.text.split("<iframe")[0]  # a fragment, not a page


def test_sms_preview_counts_segments_of_the_rendered_body(
    client: TestClient, customer: CustomerFactory
) -> None:
    ada(customer)
    token = signed_in_as(client, Role.MARKETER)
    body = "Hi {{ customer.first_name }}, " + "x" * 170
    rendered_length = len("Hi Ada, ") + 170  # GSM-7: 153 characters a segment past 160

    answer = client.post(
        "/messages/templates/beans/sms/preview",
        data={"csrf_token": token, "locale": "en", "customer": "ada", "f_body": body},
    )

    assert answer.status_code == 200, answer.text
    assert 'class="bubble">Hi Ada, xxx' in answer.text
    segments_count = math.ceil(rendered_length / 153)
    assert f"GSM-7 · {segments_count} segments · {rendered_length} characters" in answer.text


def test_sms_preview_reads_the_sample_event_typed_beside_it(
    client: TestClient, customer: CustomerFactory
) -> None:
    ada(customer)
    token = signed_in_as(client, Role.MARKETER)
    form = {"csrf_token": token, "locale": "en", "customer": "ada"}
    form["f_body"] = "Order {{ event.order_id }} is on its way"

    without = client.post("/messages/templates/beans/sms/preview", data=form)
    with_event = client.post(
        "/messages/templates/beans/sms/preview", data=form | {"event": '{"order_id": "A-17"}'}
    )

    assert "Order A-17 is on its way" not in without.text
    assert with_event.status_code == 200, with_event.text
    assert 'class="bubble">Order A-17 is on its way' in with_event.text


def test_sms_preview_with_an_event_that_is_not_json_says_where(
    client: TestClient, customer: CustomerFactory
) -> None:
    ada(customer)
    token = signed_in_as(client, Role.MARKETER)
    form = {"csrf_token": token, "locale": "en", "customer": "ada", "f_body": "Hi"}

    answer = client.post(
        "/messages/templates/beans/sms/preview", data=form | {"event": '{"order_id": '}
    )

    assert answer.status_code == 422
    assert "the event is not JSON (line 1, column 14)" in answer.text


def test_preview_refuses_marketing_without_consent_and_says_why(
    client: TestClient, customer: CustomerFactory
) -> None:
    customer("bob", email="bob@example.com", first_name="Bob", consents={"email": "unsubscribed"})
    token = signed_in_as(client, Role.MARKETER)

    answer = client.post(
        "/messages/templates/news/email/preview",
        data=email_form(token, customer="bob", category="marketing"),
    )

    assert answer.status_code == 200, answer.text
    assert "would be refused" in answer.text
    assert "unsubscribed" in answer.text


def test_preview_of_an_unknown_customer_is_422_with_the_message(client: TestClient) -> None:
    token = signed_in_as(client, Role.MARKETER)

    answer = client.post(
        "/messages/templates/news/email/preview", data=email_form(token, customer="nobody")
    )

    assert answer.status_code == 422
    assert "no customer" in answer.text


def test_saving_from_the_editor_makes_a_new_version(
    client: TestClient, template: TemplateFactory
) -> None:
    template("order_shipped", "email")
    token = signed_in_as(client, Role.MARKETER)
    editor = client.get("/messages/templates/order_shipped/email")
    assert editor.status_code == 200
    assert "Hello {{ customer.first_name }}" in html.unescape(editor.text)  # the stored subject

    answer = client.post(
        "/messages/templates/order_shipped/email",
        data=email_form(token, f_subject="Your order is on its way"),
        follow_redirects=False,
    )

    assert answer.status_code == 303
    assert version_of("order_shipped", MessageChannel.EMAIL) == 2
    with session_scope(readonly=True) as session:
        saved = service.templates.get(session, "order_shipped", MessageChannel.EMAIL)
    assert saved is not None and saved.locales["en"]["subject"] == "Your order is on its way"
    assert "Saved as version 2" in client.get(answer.headers["location"]).text


def test_a_new_template_is_created_from_the_editor(client: TestClient) -> None:
    token = signed_in_as(client, Role.ADMIN)
    assert "New template" in client.get("/messages/templates/new").text
    editor = client.get("/messages/templates/new", params={"key": "welcome", "channel": "sms"})
    assert editor.status_code == 200 and "not saved yet" in editor.text

    answer = client.post(
        "/messages/templates/welcome/sms",
        data={"csrf_token": token, "name": "Welcome", "locale": "en", "new": "1", "f_body": "Hi"},
        follow_redirects=False,
    )

    assert answer.status_code == 303
    assert version_of("welcome", MessageChannel.SMS) == 1
    again = client.post(
        "/messages/templates/welcome/sms",
        data={"csrf_token": token, "name": "Welcome", "locale": "en", "new": "1", "f_body": "Yo"},
    )
    assert again.status_code == 422 and "exists already" in again.text
    assert version_of("welcome", MessageChannel.SMS) == 1


def test_a_bad_key_for_a_new_template_is_422(client: TestClient) -> None:
    signed_in_as(client, Role.MARKETER)
    answer = client.get("/messages/templates/new", params={"key": "Bad Key", "channel": "sms"})
    assert answer.status_code == 422
    assert "lowercase letters" in answer.text


@pytest.mark.parametrize("role", [Role.AGENT, Role.ANALYST])
def test_roles_without_messages_write_may_not_save(
    client: TestClient, template: TemplateFactory, role: Role
) -> None:
    template("order_shipped", "email")
    token = signed_in_as(client, role)
    editor = client.get("/messages/templates/order_shipped/email")
    assert editor.status_code == 200 and "Save as a new version" not in editor.text

    answer = client.post("/messages/templates/order_shipped/email", data=email_form(token))

    assert answer.status_code == 403
    assert version_of("order_shipped", MessageChannel.EMAIL) == 1


def test_saving_without_the_csrf_token_is_403_and_saves_nothing(
    client: TestClient, template: TemplateFactory
) -> None:
    template("order_shipped", "email")
    signed_in_as(client, Role.MARKETER)
    form = email_form("")
    del form["csrf_token"]

    answer = client.post("/messages/templates/order_shipped/email", data=form)

    assert answer.status_code == 403
    assert version_of("order_shipped", MessageChannel.EMAIL) == 1


def test_a_liquid_error_is_422_with_its_line_and_nothing_is_saved(
    client: TestClient, template: TemplateFactory
) -> None:
    template("order_shipped", "email")
    token = signed_in_as(client, Role.MARKETER)
    body = MJML.replace("<mj-column>", "<mj-column>\n\n<mj-text>{% if %}</mj-text>")

    answer = client.post(
        "/messages/templates/order_shipped/email", data=email_form(token, f_body=body)
    )

    assert answer.status_code == 422
    assert "nothing saved" in answer.text
    assert re.search(r"<code>en</code> <code>body</code> line 3", answer.text), answer.text
    assert version_of("order_shipped", MessageChannel.EMAIL) == 1
    assert "{% if %}" in html.unescape(answer.text)  # the author's text is kept in the form


def test_a_liquid_error_in_the_preview_is_422_with_its_line(
    client: TestClient, customer: CustomerFactory
) -> None:
    ada(customer)
    token = signed_in_as(client, Role.MARKETER)
    answer = client.post(
        "/messages/templates/beans/sms/preview",
        data={"csrf_token": token, "customer": "ada", "f_body": "Hi\nthere {{ customer.first_name"},
    )
    assert answer.status_code == 422
    assert "<code>body</code> line 2" in answer.text


def test_template_pages_empty_state(client: TestClient) -> None:
    signed_in_as(client, Role.ANALYST)
    page = client.get("/messages/templates")
    assert page.status_code == 200
    assert "No templates yet" in page.text


# --- broadcasts and the outbox ---


def _worker() -> Worker:
    registry = Registry()
    registry.task(broadcasts.EXPAND_JOB)(tasks.expand_broadcast)
    registry.queue("messages.deliveries")(tasks.deliver_due)
    return Worker(registry=registry, worker_id="w1")


def _run_until_idle(worker: Worker, now: datetime) -> None:
    for _ in range(50):
        if worker.run_once(now) == 0:
            return
    raise AssertionError("the worker still had work after 50 rounds")


def test_a_broadcast_from_the_form_shows_progress_and_lands_in_the_outbox(
    client: TestClient, customer: CustomerFactory, template: TemplateFactory
) -> None:
    for n in range(3):
        customer(
            f"m{n}",
            email=f"m{n}@example.com",
            first_name=f"Member{n}",
            consents={"email": "subscribed"},
            traits={"club": "beans"},
        )
    rule = {"type": "profile", "field": "traits.club", "op": "equals", "value": "beans"}
    with session_scope() as session:
        segments.create(session, SegmentCreate(key="beans_club", name="Beans club", rule=rule))
        segments.compute(session, "beans_club")
    template("beans_news", "email", category="marketing")
    token = signed_in_as(client, Role.MARKETER)

    made = client.post(
        "/messages/broadcasts",
        data={
            "csrf_token": token,
            "name": "May beans",
            "segment": "beans_club",
            "template": "beans_news",
            "channel": "email",
            "when": "now",
        },
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    page = client.get(made.headers["location"])
    assert "May beans" in page.text and "scheduled" in page.text
    assert "No messages queued yet" in page.text

    _run_until_idle(_worker(), T0)

    page = client.get(made.headers["location"])
    assert '<progress max="3" value="3"' in page.text
    assert "<dt>delivered</dt><dd>3</dd>" in page.text
    listing = client.get("/messages/broadcasts")
    assert "May beans" in listing.text and "data-chart=" in listing.text
    outbox = client.get("/messages/outbox", params={"channel": "email"})
    assert outbox.text.count('class="outbox-row"') == 3
    assert "Hello Member1" in outbox.text
    link = re.search(
        r'href="(/messages/outbox/[0-9A-Z]+)">[^<]*</a></td>\s*<td>email</td>\s*<td>m1@',
        outbox.text,
    )
    assert link is not None, outbox.text
    message = client.get(link.group(1))
    assert message.status_code == 200
    assert "m1@example.com" in message.text and "Hello Member1" in message.text
    assert "Hi Member1, our new beans are in." in html.unescape(message.text)
    assert client.get("/messages/outbox", params={"channel": "sms"}).text.count("outbox-row") == 0


def test_a_broadcast_form_with_an_unknown_segment_is_422(
    client: TestClient, template: TemplateFactory
) -> None:
    template("beans_news", "email")
    token = signed_in_as(client, Role.MARKETER)
    answer = client.post(
        "/messages/broadcasts",
        data={"csrf_token": token, "segment": "nope", "template": "beans_news", "when": "now"},
    )
    assert answer.status_code == 422
    assert "no segment" in answer.text
    with session_scope(readonly=True) as session:
        assert service.list_broadcasts(session) == []


def test_analyst_may_not_create_a_broadcast(client: TestClient) -> None:
    token = signed_in_as(client, Role.ANALYST)
    page = client.get("/messages/broadcasts")
    assert "Create broadcast" not in page.text
    answer = client.post("/messages/broadcasts", data={"csrf_token": token, "segment": "x"})
    assert answer.status_code == 403


def test_empty_broadcasts_deliveries_and_outbox(client: TestClient) -> None:
    signed_in_as(client, Role.MARKETER)
    assert "No broadcasts yet" in client.get("/messages/broadcasts").text
    assert "No messages sent yet" in client.get("/messages/deliveries").text
    assert "The outbox is empty" in client.get("/messages/outbox").text


# --- deliveries ---


def _send(customer_id: str, template_key: str, channel: MessageChannel) -> str:
    with session_scope() as session:
        return service.send(
            session,
            service.SendRequest(customer_id=customer_id, template=template_key, channel=channel),
        )


def test_deliveries_filters_select_the_right_rows(
    client: TestClient, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada_id = ada(customer)
    bob_id = customer(
        "bob",
        email="bob@example.com",
        phone="+4915187654321",
        first_name="Bob",
        consents={"email": "subscribed", "sms": "subscribed"},
    )
    template("receipt", "email")
    template("receipt", "sms")
    template("shipped", "email")
    _send(ada_id, "receipt", MessageChannel.EMAIL)
    _send(bob_id, "receipt", MessageChannel.SMS)
    _send(bob_id, "shipped", MessageChannel.EMAIL)
    deliver_due()
    signed_in_as(client, Role.AGENT)

    def rows(**filters: str) -> list[tuple[str, str]]:
        page = client.get("/messages/deliveries", params=filters)
        assert page.status_code == 200, page.text
        return re.findall(
            r'<td><a href="/customers/[^"]+">([^<]+)</a></td>\s*<td>(\w+)</td>', page.text
        )

    assert len(rows()) == 3
    assert rows(channel="sms") == [("+4915187654321", "sms")]
    assert sorted(rows(template="receipt")) == [
        ("+4915187654321", "sms"),
        ("ada@example.com", "email"),
    ]
    assert rows(customer="ada@example.com") == [("ada@example.com", "email")]
    assert rows(customer="bob", channel="email") == [("bob@example.com", "email")]
    assert len(rows(provider="sandbox", status="delivered")) == 3
    assert rows(status="queued") == []
    assert (
        "No deliveries match these filters"
        in client.get("/messages/deliveries", params={"status": "queued"}).text
    )
    bad = client.get("/messages/deliveries", params={"channel": "pigeon"})
    assert bad.status_code == 422 and "is not a channel" in bad.text


def test_a_delivery_page_shows_its_events_and_what_it_said(
    client: TestClient, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada_id = ada(customer)
    template("receipt", "sms")
    delivery_id = _send(ada_id, "receipt", MessageChannel.SMS)
    deliver_due()
    signed_in_as(client, Role.ANALYST)

    page = client.get(f"/messages/deliveries/{delivery_id}")

    assert page.status_code == 200
    assert "message.queued" in page.text and "message.delivered" in page.text
    assert 'class="bubble">Hi Ada, our new beans are in.' in page.text
    assert client.get("/messages/deliveries/NOPE").status_code == 404


# --- settings: providers and policies ---

SMTP = {
    "host": "smtp.example.com",
    "username": "shop",
    "password": "hunter2",
    "from_address": "a@b.example",
}
MASK = "********"


def test_providers_page_masks_secrets_and_is_for_admins_only(client: TestClient) -> None:
    with session_scope() as session:
        service.providers.save(
            session,
            "mailer",
            ProviderWrite(channel=MessageChannel.EMAIL, kind="smtp", config=SMTP),
        )
    marketer = TestClient(client.app)
    signed_in_as(marketer, Role.MARKETER)
    assert marketer.get("/settings/providers").status_code == 403
    assert marketer.get("/settings/policies").status_code == 403
    signed_in_as(client, Role.ADMIN)

    page = client.get("/settings/providers")

    assert page.status_code == 200
    assert "smtp.example.com" in page.text and "mailer" in page.text
    assert "hunter2" not in page.text
    assert MASK in page.text


def test_saving_a_provider_keeps_a_masked_secret_and_a_bad_one_is_422(client: TestClient) -> None:
    token = signed_in_as(client, Role.ADMIN)
    form = {
        "csrf_token": token,
        "name": "mailer",
        "channel": "email",
        "kind": "smtp",
        "priority": "1",
        "enabled": "on",
        "config": json.dumps(SMTP),
    }
    assert client.post("/settings/providers", data=form, follow_redirects=False).status_code == 303
    masked = form | {"config": json.dumps(SMTP | {"host": "smtp2.example.com", "password": MASK})}
    assert (
        client.post("/settings/providers", data=masked, follow_redirects=False).status_code == 303
    )
    with session_scope(readonly=True) as session:
        stored = service.providers.get(session, "mailer")
        assert stored is not None
        assert (
            stored.config["password"] == "hunter2" and stored.config["host"] == "smtp2.example.com"
        )

    bad = client.post("/settings/providers", data=form | {"name": "other", "kind": "pigeon"})
    assert bad.status_code == 422 and "unknown provider kind" in bad.text
    no_csrf = client.post("/settings/providers", data=form | {"name": "third", "csrf_token": ""})
    assert no_csrf.status_code == 403
    with session_scope(readonly=True) as session:
        assert [p.name for p in service.providers.list_all(session)] == ["mailer"]


def test_a_test_send_shows_what_the_provider_answered(client: TestClient) -> None:
    with session_scope() as session:
        service.providers.save(
            session,
            "box",
            ProviderWrite(
                channel=MessageChannel.SMS, kind="sandbox", config={"fail_addresses": ["+4900"]}
            ),
        )
    token = signed_in_as(client, Role.ADMIN)

    good = client.post(
        "/settings/providers/box/test", data={"csrf_token": token, "recipient": "+4911"}
    )
    bad = client.post(
        "/settings/providers/box/test", data={"csrf_token": token, "recipient": "+4900"}
    )

    assert good.status_code == 200 and "to +4911: accepted (delivered)" in good.text
    assert bad.status_code == 200 and "to +4900: refused: sandbox: +4900 bounces" in bad.text
    missing = client.post(
        "/settings/providers/nope/test", data={"csrf_token": token, "recipient": "x"}
    )
    assert missing.status_code == 422 and "no provider" in missing.text


def test_providers_page_empty_state(client: TestClient) -> None:
    signed_in_as(client, Role.OWNER)
    assert "No providers configured" in client.get("/settings/providers").text


def test_policies_page_shows_each_setting_and_its_variable(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from regulars.config import reset_settings

    monkeypatch.setenv("REGULARS_FREQUENCY_CAPS", '["email:1/2d"]')
    monkeypatch.setenv("REGULARS_QUIET_HOURS_START", "22:30")
    reset_settings()
    signed_in_as(client, Role.ADMIN)

    page = client.get("/settings/policies")

    assert page.status_code == 200
    assert "<code>email:1/2d</code></td><td><code>REGULARS_FREQUENCY_CAPS</code>" in page.text
    assert "<code>22:30:00</code></td><td><code>REGULARS_QUIET_HOURS_START</code>" in page.text
    assert "Read-only" in page.text
