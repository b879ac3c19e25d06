"""The segments pages on both databases: the list with stored counts and trend lines, one
segment with its rule in words and "why in or out", the builder's live preview and saving."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from regulars.app import create_app
from regulars.db import Database, session_scope
from regulars.identity.models import Role
from regulars.kit import clock
from regulars.kit.clock import FrozenClock
from regulars.segments import service
from regulars.segments.schemas import SegmentCreate
from tests.customers.helpers import ingest, owner_of
from tests.staff import signed_in_as

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
BERLIN = {"type": "profile", "field": "traits.city", "op": "equals", "value": "Berlin"}
HAMBURG = {"type": "profile", "field": "traits.city", "op": "equals", "value": "Hamburg"}
CHART = re.compile(r"data-chart='([^']*)'")


@pytest.fixture
def moved_clock(database: Database) -> Iterator[FrozenClock]:
    with clock.frozen(T0) as frozen:
        yield frozen


def client_as(role: Role) -> tuple[TestClient, str]:
    client = TestClient(create_app(with_worker=False))
    return client, signed_in_as(client, role)


def identify(user: str, *, city: str) -> str:
    at = clock.now()
    message = {
        "type": "identify",
        "userId": user,
        "traits": {"city": city, "email": f"{user}@example.com"},
        "timestamp": at.isoformat(),
        "messageId": f"identify-{user}-{at.isoformat()}",
    }
    assert ingest([message]).accepted == 1
    owner = owner_of(user)
    assert owner is not None
    return owner


def save(key: str, rule: dict[str, Any], *, description: str = "") -> None:
    with session_scope() as session:
        data = SegmentCreate(key=key, name=key.title(), description=description, rule=rule)
        service.create(session, data)
        service.compute(session, key, now=clock.now())


def stored(key: str) -> dict[str, Any] | None:
    with session_scope(readonly=True) as session:
        segment = service.find(session, key)
        return None if segment is None else {"name": segment.name, "rule": segment.rule}


def rule_form(rule: object, csrf: str, **fields: str) -> dict[str, str]:
    return {"rule": json.dumps(rule), "csrf_token": csrf, **fields}


def preview(client: TestClient, csrf: str, rule: object) -> Response:
    answer: Response = client.post("/segments/preview", data=rule_form(rule, csrf))
    return answer


def preview_count(answer: Response) -> int:
    found = re.search(r'id="preview-count">([\d,]+)<', answer.text)
    assert found is not None, answer.text
    return int(found.group(1).replace(",", ""))


# --- list ---


def test_the_list_shows_stored_counts_and_a_trend_line_of_the_daily_counts(
    moved_clock: FrozenClock,
) -> None:
    moved_clock.set(T0 - timedelta(days=2))
    identify("ada", city="Berlin")
    identify("cy", city="Hamburg")
    save("berliners", BERLIN, description="People in Berlin")
    moved_clock.set(T0)
    identify("bob", city="Berlin")
    with session_scope() as session:
        service.compute(session, "berliners", now=T0)
    client, _ = client_as(Role.MARKETER)

    answer = client.get("/segments")

    assert answer.status_code == 200
    assert 'href="/segments/berliners"' in answer.text
    assert "People in Berlin" in answer.text
    assert 'data-members="berliners">2<' in answer.text
    assert 'href="/segments/new"' in answer.text
    charts = CHART.findall(answer.text)
    assert len(charts) == 1
    option = json.loads(charts[0].replace("&#39;", "'"))
    days, counts = option["xAxis"]["data"], option["series"][0]["data"]
    assert len(days) == 30 and days[-1] == "2026-05-04"
    # 1 member computed two days ago, carried over the day between, 2 today; nothing before.
    assert counts[-3:] == [1, 1, 2]
    assert set(counts[:-3]) == {None}


def test_the_list_offers_no_new_segment_button_to_a_role_that_cannot_write(
    moved_clock: FrozenClock,
) -> None:
    save("berliners", BERLIN)
    client, _ = client_as(Role.ANALYST)
    answer = client.get("/segments")
    assert answer.status_code == 200
    assert 'href="/segments/berliners"' in answer.text
    assert 'href="/segments/new"' not in answer.text


def test_an_empty_database_shows_what_to_do_next(moved_clock: FrozenClock) -> None:
    client, _ = client_as(Role.MARKETER)
    answer = client.get("/segments")
    assert answer.status_code == 200
    assert "No segments yet" in answer.text
    assert "regulars segments compute --all" in answer.text
    assert 'href="/segments/new"' in answer.text


# --- segment page and explain ---


def test_the_segment_page_shows_the_rule_in_words_and_its_members(
    moved_clock: FrozenClock,
) -> None:
    ada = identify("ada", city="Berlin")
    cy = identify("cy", city="Hamburg")
    save("berliners", BERLIN)
    repeat = {
        "type": "event",
        "name": "Order Completed",
        "value": 2,
        "window": {"last": {"amount": 90, "unit": "days"}},
    }
    save("not_berliners", {"type": "or", "rules": [{"type": "not", "rule": BERLIN}, repeat]})
    client, _ = client_as(Role.AGENT)

    answer = client.get("/segments/not_berliners")

    assert answer.status_code == 200
    assert "at least one of these 2 conditions holds" in answer.text
    assert "performed &#39;Order Completed&#39; at least 2 times in the last 90 days" in answer.text
    assert "the condition below does not hold" in answer.text
    assert "traits.city is &#39;Berlin&#39;" in answer.text
    assert f'href="/customers/{cy}"' in answer.text
    assert f'href="/customers/{ada}"' not in answer.text
    assert 'href="/segments/not_berliners/edit"' not in answer.text  # agents may not edit


def test_an_unknown_segment_is_a_404_page(moved_clock: FrozenClock) -> None:
    client, _ = client_as(Role.MARKETER)
    answer = client.get("/segments/nobody")
    assert answer.status_code == 404
    assert "no segment with key or id" in answer.text


def test_explain_shows_why_one_customer_is_in_and_another_out(
    moved_clock: FrozenClock,
) -> None:
    ada = identify("ada", city="Berlin")
    cy = identify("cy", city="Hamburg")
    save("berliners", BERLIN)
    client, _ = client_as(Role.ANALYST)

    inside = client.get("/segments/berliners/explain", params={"customer": "ada@example.com"})
    outside = client.get("/segments/berliners/explain", params={"customer": "cy"})

    assert inside.status_code == 200
    assert "rule holds: in" in inside.text and f'href="/customers/{ada}"' in inside.text
    assert 'data-holds="true"' in inside.text and 'data-holds="false"' not in inside.text
    assert "(found: Berlin)" in inside.text
    assert outside.status_code == 200
    assert "rule does not hold: out" in outside.text and f'href="/customers/{cy}"' in outside.text
    assert 'data-holds="false"' in outside.text and "(found: Hamburg)" in outside.text


def test_explain_on_the_segment_page_without_javascript_and_for_an_unknown_customer(
    moved_clock: FrozenClock,
) -> None:
    identify("ada", city="Berlin")
    save("berliners", BERLIN)
    client, _ = client_as(Role.MARKETER)

    page = client.get("/segments/berliners", params={"customer": "ada"})
    unknown = client.get("/segments/berliners/explain", params={"customer": "zed@example.com"})

    assert page.status_code == 200 and "rule holds: in" in page.text
    assert unknown.status_code == 404
    assert "No customer with the id, email or external id “zed@example.com”" in unknown.text


# --- builder: preview ---


def test_the_preview_counts_the_customers_that_match_and_follows_the_rule(
    moved_clock: FrozenClock,
) -> None:
    identify("ada", city="Berlin")
    identify("bob", city="Berlin")
    identify("cy", city="Hamburg")
    client, csrf = client_as(Role.ANALYST)  # reading is enough to preview

    berlin = preview(client, csrf, {"type": "or", "rules": [BERLIN]})
    hamburg = preview(client, csrf, {"type": "or", "rules": [HAMBURG]})
    either = preview(client, csrf, {"type": "or", "rules": [BERLIN, HAMBURG]})

    assert berlin.status_code == 200 and preview_count(berlin) == 2
    assert "ada@example.com" in berlin.text and "bob@example.com" in berlin.text
    assert "cy@example.com" not in berlin.text
    assert preview_count(hamburg) == 1 and "cy@example.com" in hamburg.text
    assert preview_count(either) == 3


def test_an_invalid_rule_previews_as_a_422_naming_the_bad_node(moved_clock: FrozenClock) -> None:
    client, csrf = client_as(Role.MARKETER)
    bad = {"type": "and", "rules": [BERLIN, {"type": "fact", "field": "orders_count", "op": "gt"}]}

    answer = preview(client, csrf, bad)
    broken = client.post("/segments/preview", data={"rule": "{not json", "csrf_token": csrf})
    unknown = preview(client, csrf, {"type": "segment", "segment": "ghosts"})

    assert answer.status_code == 422
    assert "<code>rule.rules.1</code>: gt needs a number" in answer.text
    assert 'data-error-paths="rule.rules.1"' in answer.text
    assert "<html" not in answer.text  # a fragment, not a page
    assert broken.status_code == 422 and "not valid JSON" in broken.text
    assert unknown.status_code == 422 and "unknown segment &#39;ghosts&#39;" in unknown.text


def test_the_preview_needs_the_csrf_token(moved_clock: FrozenClock) -> None:
    client, _ = client_as(Role.MARKETER)
    assert client.post("/segments/preview", data={"rule": json.dumps(BERLIN)}).status_code == 403


# --- builder: save ---


def test_the_builder_saves_a_new_segment_and_queues_its_compute(
    moved_clock: FrozenClock,
) -> None:
    client, csrf = client_as(Role.MARKETER)
    assert client.get("/segments/new").status_code == 200

    answer = client.post(
        "/segments",
        data=rule_form(BERLIN, csrf, key="berliners", name="Berliners", description="In Berlin"),
        follow_redirects=False,
    )

    assert answer.status_code == 303
    assert answer.headers["location"] == "/segments/berliners"
    assert stored("berliners") == {"name": "Berliners", "rule": BERLIN}
    page = client.get("/segments/berliners")
    assert "Berliners" in page.text and "computing" in page.text


@pytest.mark.parametrize("role", [Role.AGENT, Role.ANALYST])
def test_roles_that_cannot_write_get_403_on_save_and_nothing_is_saved(
    moved_clock: FrozenClock, role: Role
) -> None:
    client, csrf = client_as(role)
    form = rule_form(BERLIN, csrf, key="berliners", name="Berliners")

    assert client.get("/segments/new").status_code == 403
    assert client.post("/segments", data=form, follow_redirects=False).status_code == 403
    assert stored("berliners") is None


def test_saving_without_the_csrf_token_is_refused(moved_clock: FrozenClock) -> None:
    client, _ = client_as(Role.MARKETER)
    form = {"rule": json.dumps(BERLIN), "key": "berliners", "name": "Berliners"}
    assert client.post("/segments", data=form, follow_redirects=False).status_code == 403
    assert stored("berliners") is None


def test_an_invalid_rule_or_key_re_renders_the_builder_and_saves_nothing(
    moved_clock: FrozenClock,
) -> None:
    client, csrf = client_as(Role.MARKETER)
    bad_rule = {"type": "or", "rules": [{"type": "profile", "field": "shoe_size", "op": "exists"}]}

    answer = client.post(
        "/segments", data=rule_form(bad_rule, csrf, key="feet", name="Feet"), follow_redirects=False
    )
    bad_key = client.post(
        "/segments", data=rule_form(BERLIN, csrf, key="Bad Key", name="X"), follow_redirects=False
    )

    assert answer.status_code == 422
    assert "Not saved:" in answer.text and "rule.rules.0: unknown field &#39;shoe_size&#39;" in (
        answer.text
    )
    assert 'value="Feet"' in answer.text  # what was typed stays
    assert bad_key.status_code == 422 and "key: String should match pattern" in bad_key.text
    assert stored("feet") is None and stored("Bad Key") is None


def test_a_taken_key_is_refused_with_a_message(moved_clock: FrozenClock) -> None:
    save("berliners", BERLIN)
    client, csrf = client_as(Role.MARKETER)
    answer = client.post(
        "/segments",
        data=rule_form(HAMBURG, csrf, key="berliners", name="Other"),
        follow_redirects=False,
    )
    assert answer.status_code == 409
    assert "a segment with key &#39;berliners&#39; exists" in answer.text
    assert stored("berliners") == {"name": "Berliners", "rule": BERLIN}


def test_editing_changes_the_rule_and_a_bad_edit_changes_nothing(
    moved_clock: FrozenClock,
) -> None:
    save("city", BERLIN)
    client, csrf = client_as(Role.MARKETER)
    edit = client.get("/segments/city/edit")
    assert edit.status_code == 200 and "traits.city" in edit.text

    bad = client.post(
        "/segments/city",
        data=rule_form({"type": "and", "rules": []}, csrf, name="Hamburgers"),
        follow_redirects=False,
    )
    assert bad.status_code == 422 and "rule.rules" in bad.text
    assert stored("city") == {"name": "City", "rule": BERLIN}

    good = client.post(
        "/segments/city", data=rule_form(HAMBURG, csrf, name="Hamburgers"), follow_redirects=False
    )
    assert good.status_code == 303 and good.headers["location"] == "/segments/city"
    assert stored("city") == {"name": "Hamburgers", "rule": HAMBURG}
