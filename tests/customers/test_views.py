"""The Customers pages: search by each kind, segment filter, pagination, profile, timeline."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from regulars.app import create_app
from regulars.customers.models import IdentityKind
from regulars.db import Database, session_scope
from regulars.identity.models import Role
from regulars.segments import service as segments
from regulars.segments.schemas import SegmentCreate
from tests.customers.helpers import ingest, owner_of
from tests.staff import signed_in_as

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LINK = re.compile(r'href="/customers/([0-9A-Z]{26})"')
NEXT = re.compile(r'href="(/customers\?[^"]*cursor=[^"]+)"')
MORE = re.compile(r'hx-get="(/customers/[0-9A-Z]{26}/timeline\?before=[^"]+)"')
PEOPLE = {
    "u-ada": ("Ada", "Lovelace", "ada@example.com", "+14155552671", "Berlin"),
    "u-adam": ("Adam", "Smith", "adam@example.org", "+14155550000", "Paris"),
    "u-alan": ("Alan", "Turing", "alan@example.org", "+442071838750", "Berlin"),
    "u-grace": ("Grace", "Hopper", "grace@navy.example", "+12025550123", "Paris"),
}


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def identify(user_id: str, traits: dict[str, Any], minutes: float = 0) -> str:
    message = {"type": "identify", "userId": user_id, "traits": traits, "timestamp": at(minutes)}
    result = ingest([message | {"messageId": f"identify-{user_id}"}])
    assert result.rejected == [], result.rejected
    owner = owner_of(user_id)
    assert owner is not None
    return owner


@pytest.fixture
def client(database: Database) -> TestClient:
    client = TestClient(create_app(with_worker=False))
    signed_in_as(client, Role.AGENT)
    return client


@pytest.fixture
def people(database: Database) -> dict[str, str]:
    """user id -> customer id of four customers."""
    ids = {}
    for user_id, (first, last, email, phone, city) in PEOPLE.items():
        traits = {"firstName": first, "lastName": last, "email": email, "phone": phone}
        ids[user_id] = identify(user_id, traits | {"city": city})
    return ids


def found(client: TestClient, query: str, **params: str) -> list[str]:
    response = client.get("/customers", params={"q": query, **params})
    assert response.status_code == 200, response.text
    return LINK.findall(response.text)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ada@", {"u-ada"}),  # email prefix
        ("alan@example.org", {"u-alan"}),
        ("+1415", {"u-ada", "u-adam"}),  # phone prefix in E.164
        ("+1 415 555 2671", {"u-ada"}),
        ("0044 20", {"u-alan"}),
        ("ad", {"u-ada", "u-adam"}),  # first-name prefix, any case
        ("LOVE", {"u-ada"}),  # last-name prefix
        ("ada love", {"u-ada"}),  # "first last"
        ("alan smith", set()),
        ("u-grace", {"u-grace"}),  # exact external user id
        ("zz", set()),
    ],
)
def test_search_finds_each_kind_and_no_one_else(
    client: TestClient, people: dict[str, str], query: str, expected: set[str]
) -> None:
    assert set(found(client, query)) == {people[u] for u in expected}


def test_search_by_customer_id_finds_that_customer(
    client: TestClient, people: dict[str, str]
) -> None:
    assert found(client, people["u-grace"]) == [people["u-grace"]]
    assert found(client, people["u-grace"].lower()) == [people["u-grace"]]


def test_live_search_answers_the_results_fragment(
    client: TestClient, people: dict[str, str]
) -> None:
    response = client.get(
        "/customers", params={"q": "tur"}, headers={"HX-Request": "true", "HX-Target": "results"}
    )
    assert response.status_code == 200
    assert "<html" not in response.text
    assert LINK.findall(response.text) == [people["u-alan"]]


def test_segment_filter_keeps_members_only(client: TestClient, people: dict[str, str]) -> None:
    rule = {"type": "profile", "field": "traits.city", "op": "equals", "value": "Berlin"}
    with session_scope() as session:
        segments.create(session, SegmentCreate(key="berliners", name="Berliners", rule=rule))
        segments.compute(session, "berliners")
    page = client.get("/customers", params={"segment": "berliners"})
    assert "Berliners" in page.text
    assert set(LINK.findall(page.text)) == {people["u-ada"], people["u-alan"]}
    assert set(found(client, "a", segment="berliners")) == {people["u-ada"], people["u-alan"]}
    assert set(found(client, "ad", segment="berliners")) == {people["u-ada"]}


def _walk(client: TestClient, url: str) -> list[list[str]]:
    pages = []
    while True:
        response = client.get(url)
        assert response.status_code == 200, response.text
        pages.append(LINK.findall(response.text))
        following = NEXT.search(response.text)
        if following is None:
            return pages
        url = following.group(1).replace("&amp;", "&")


@pytest.mark.parametrize("url", ["/customers", "/customers?q=zed", "/customers?q=person"])
def test_pages_of_50_cover_everyone_once(client: TestClient, url: str) -> None:
    names = [(f"Zed{i:03d}", f"Person{119 - i:03d}") for i in range(120)]
    ingest(
        [
            {
                "type": "identify",
                "userId": f"z{i}",
                "messageId": f"z{i}",
                "traits": {"firstName": first, "lastName": last},
            }
            for i, (first, last) in enumerate(names)
        ]
    )
    identify("other", {"firstName": "Other", "lastName": "One"})
    pages = _walk(client, url)
    everyone = [customer for page in pages for customer in page]
    expected = {owner_of(f"z{i}") for i in range(120)} | (
        {owner_of("other")} if url == "/customers" else set()
    )
    assert [len(page) for page in pages] == ([50, 50, 21] if url == "/customers" else [50, 50, 20])
    assert len(everyone) == len(set(everyone))
    assert set(everyone) == expected


def test_bad_cursor_is_a_clear_422(client: TestClient, people: dict[str, str]) -> None:
    response = client.get("/customers", params={"q": "ada", "cursor": "garbage"})
    assert response.status_code == 422
    assert "cursor is not valid" in response.text


def test_empty_database_says_how_to_get_customers(client: TestClient) -> None:
    response = client.get("/customers")
    assert response.status_code == 200
    assert "No customers yet" in response.text and "regulars demo" in response.text
    assert "No customers match" in client.get("/customers", params={"q": "ada"}).text


def test_signed_out_visitors_go_to_sign_in(database: Database) -> None:
    response = TestClient(create_app(with_worker=False)).get("/customers", follow_redirects=False)
    assert response.status_code in (302, 303, 307)
    assert "/login" in response.headers["location"]


# --- the profile ---


def _orders(user_id: str, count: int) -> None:
    ingest(
        [
            {
                "type": "track",
                "userId": user_id,
                "event": "Order Completed",
                "messageId": f"order-{n}",
                "timestamp": at(n),
                "properties": {"order_id": f"o{n}", "revenue": 10 + n, "products": [{}] * 3},
            }
            for n in range(1, count + 1)
        ]
    )


def test_profile_shows_the_customer_and_their_facts(
    client: TestClient, people: dict[str, str]
) -> None:
    _orders("u-ada", 2)
    page = client.get(f"/customers/{people['u-ada']}")
    assert page.status_code == 200
    text = page.text
    for shown in ("Ada Lovelace", "ada@example.com", "+14155552671", "u-ada", "Berlin"):
        assert shown in text
    assert "Order Completed · 3 items · $12.00" in text  # newest first
    assert "Order Completed · 3 items · $11.00" in text
    assert "23.00" in text  # revenue fact
    assert "Lovelace" not in client.get(f"/customers/{people['u-grace']}").text


def test_timeline_scrolls_in_pages_to_the_first_event(
    client: TestClient, people: dict[str, str]
) -> None:
    _orders("u-ada", 119)  # with the identify call: 120 events
    page = client.get(f"/customers/{people['u-ada']}").text
    shown = re.findall(r"\$(\d+)\.00", page)
    assert shown[:2] == ["129", "128"] and len(shown) == 50
    more = MORE.search(page)
    assert more is not None
    second = client.get(more.group(1).replace("&amp;", "&"))
    assert second.status_code == 200 and "<html" not in second.text
    assert re.findall(r"\$(\d+)\.00", second.text) == [str(n) for n in range(79, 29, -1)]
    third_url = MORE.search(second.text)
    assert third_url is not None
    third = client.get(third_url.group(1).replace("&amp;", "&")).text
    assert re.findall(r"\$(\d+)\.00", third) == [str(n) for n in range(29, 10, -1)]
    assert "Profile updated" in third and MORE.search(third) is None
    assert "beginning of this timeline" in third


def test_unknown_customer_is_a_404_page(client: TestClient, people: dict[str, str]) -> None:
    response = client.get("/customers/01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert response.status_code == 404
    assert "no customer" in response.text
    timeline = client.get("/customers/01ARZ3NDEKTSV4RRFFQ69G5FAV/timeline", params={"before": "x"})
    assert timeline.status_code in (404, 422)


def test_merged_profile_redirects_to_the_survivor(client: TestClient, database: Database) -> None:
    ingest([{"type": "track", "anonymousId": "anon", "event": "Viewed", "messageId": "1"}])
    merged = owner_of("anon", IdentityKind.ANONYMOUS_ID)
    survivor = identify("u-x", {"firstName": "Xavier"})
    ingest([{"type": "identify", "userId": "u-x", "anonymousId": "anon", "messageId": "2"}])
    assert merged is not None and merged != survivor
    response = client.get(f"/customers/{merged}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/customers/{survivor}"
