"""Shared fixtures of the messages tests: an app client with an API key of each scope, a
`customer` factory (an identify with contact details and consents) and a `template` helper
that saves a template per channel with ready-made content.

    def test_something(api: Api, customer: CustomerFactory, template: TemplateFactory):
        alice = customer("alice", email="alice@example.com", consents={"email": "subscribed"})
        template("welcome", "email", category="marketing", topic="newsletter")
        api.client.post("/api/messages", json={...}, headers=api.write)

Signed links and Twilio signatures name REGULARS_PUBLIC_URL, so the `public_url` fixture
sets it to the TestClient's base URL (http://testserver).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from regulars.app import create_app
from regulars.config import reset_settings
from regulars.customers import service as customers
from regulars.db import Database, session_scope
from regulars.identity.models import ApiKeyScope
from regulars.kit import clock
from regulars.messages import tasks, templates
from regulars.messages.models import Category, MessageChannel
from regulars.messages.schemas import TemplateRead, TemplateWrite
from tests.identity.keys import headers

PUBLIC_URL = "http://testserver"
# A Monday, 10:00 UTC: 11:00 in Berlin, daytime (outside the default quiet hours) in Europe.
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

# Ready-made content of each channel, with the customer's first name in it.
DEFAULT_CONTENT: dict[MessageChannel, dict[str, Any]] = {
    MessageChannel.EMAIL: {
        "subject": "Hello {{ customer.first_name }}",
        "body": (
            "<mjml><mj-body><mj-section><mj-column>"
            "<mj-text>Hi {{ customer.first_name }}, our new beans are in.</mj-text>"
            '<mj-button href="https://shop.example.com/beans">Shop now</mj-button>'
            "</mj-column></mj-section></mj-body></mjml>"
        ),
    },
    MessageChannel.SMS: {"body": "Hi {{ customer.first_name }}, our new beans are in."},
    MessageChannel.WHATSAPP: {
        "body": "Hi {{ customer.first_name }}, our new beans are in.",
        "template_name": "new_beans",
        "template_language": "en",
        "parameters": ["{{ customer.first_name }}"],
    },
    MessageChannel.PUSH: {
        "title": "New beans, {{ customer.first_name }}",
        "body": "Our new beans are in.",
        "url": "https://shop.example.com/beans",
    },
    MessageChannel.INAPP: {
        "title": "New beans, {{ customer.first_name }}",
        "body": "Our new beans are in.",
        "link": "https://shop.example.com/beans",
    },
    MessageChannel.WEBHOOK: {
        "url": "https://hooks.example.com/regulars",
        "body": '{"customer": "{{ customer.id }}"}',
    },
}


@dataclass(frozen=True, slots=True)
class Api:
    """The app's TestClient and the Authorization headers of an API key of each scope."""

    client: TestClient
    read: dict[str, str]
    write: dict[str, str]
    admin: dict[str, str]


class CustomerFactory(Protocol):
    def __call__(
        self,
        user_id: str,
        *,
        email: str | None = None,
        phone: str | None = None,
        first_name: str | None = None,
        timezone: str | None = None,
        locale: str | None = None,
        consents: Mapping[str, str | bool] | None = None,
        traits: Mapping[str, Any] | None = None,
    ) -> str: ...


class TemplateFactory(Protocol):
    def __call__(
        self,
        key: str,
        channel: MessageChannel | str,
        locales: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        category: Category | str = Category.TRANSACTIONAL,
        topic: str = "",
        strict: bool = True,
        default_locale: str = "en",
        name: str | None = None,
    ) -> TemplateRead: ...


@pytest.fixture
def frozen_clock() -> Iterator[clock.FrozenClock]:
    """The regulars clock stands at T0 until the test moves it."""
    with clock.frozen(T0) as frozen:
        yield frozen


@pytest.fixture
def public_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """REGULARS_PUBLIC_URL is the TestClient's base URL, so signed links resolve in it."""
    monkeypatch.setenv("REGULARS_PUBLIC_URL", PUBLIC_URL)
    reset_settings()
    yield PUBLIC_URL
    reset_settings()


@pytest.fixture
def client(database: Database, public_url: str) -> TestClient:
    return TestClient(create_app(with_worker=False))


@pytest.fixture
def api(client: TestClient) -> Api:
    return Api(
        client=client,
        read=headers(ApiKeyScope.READ),
        write=headers(ApiKeyScope.WRITE),
        admin=headers(ApiKeyScope.ADMIN),
    )


@pytest.fixture
def customer(database: Database) -> CustomerFactory:
    """Make a customer with an identify (timestamped now on the regulars clock); answers
    the customer id. `consents` are as the identify trait takes them:
    {"email": "subscribed", "sms": False, "email:newsletter": True}."""
    counter = itertools.count(1)

    def make(
        user_id: str,
        *,
        email: str | None = None,
        phone: str | None = None,
        first_name: str | None = None,
        timezone: str | None = None,
        locale: str | None = None,
        consents: Mapping[str, str | bool] | None = None,
        traits: Mapping[str, Any] | None = None,
    ) -> str:
        values: dict[str, Any] = dict(traits or {})
        given = {
            "email": email,
            "phone": phone,
            "firstName": first_name,
            "timezone": timezone,
            "locale": locale,
        }
        values.update({k: v for k, v in given.items() if v is not None})
        if consents is not None:
            values["consents"] = dict(consents)
        message = {
            "type": "identify",
            "userId": user_id,
            "traits": values,
            "messageId": f"identify-{user_id}-{next(counter)}",
            "timestamp": clock.now().isoformat(),
        }
        with session_scope() as session:
            result = customers.ingest(session, [message], source="tests")
            assert result.rejected == [], result.rejected
            found = customers.find_customer(session, user_id)
        assert found is not None
        return found

    return make


@pytest.fixture
def template(database: Database) -> TemplateFactory:
    """Save a template (a new version when it exists) through the service; without
    `locales` it gets DEFAULT_CONTENT of its channel in "en"."""

    def save(
        key: str,
        channel: MessageChannel | str,
        locales: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        category: Category | str = Category.TRANSACTIONAL,
        topic: str = "",
        strict: bool = True,
        default_locale: str = "en",
        name: str | None = None,
    ) -> TemplateRead:
        channel = MessageChannel(channel)
        content = locales or {default_locale: DEFAULT_CONTENT[channel]}
        data = TemplateWrite(
            name=name or key.replace("_", " ").capitalize(),
            category=Category(category),
            topic=topic,
            strict=strict,
            default_locale=default_locale,
            locales={locale: dict(fields) for locale, fields in content.items()},
        )
        with session_scope() as session:
            return templates.save(session, key, channel, data)

    return save


def error_of(response: Response, status: int) -> dict[str, Any]:
    """The `error` object of an API error answer, once its status is the one expected."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def deliver_due() -> int:
    """One worker round over the due deliveries at the regulars clock's now."""
    return tasks.deliver_due("w", clock.now(), 100)


def timeline(api: Api, customer_id: str, name: str) -> list[dict[str, Any]]:
    """The customer's events of one name, newest first, through the API."""
    response = api.client.get(
        f"/api/customers/{customer_id}/events", params={"name": name}, headers=api.read
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items
