"""The dashboard in real Chromium: each role signs in and sees only what it may; the main
tasks of each page done the way a person does them, with a screenshot of every page."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import Page, expect

from regulars.identity.models import Role
from regulars.identity.roles import ROLE_PERMISSIONS
from regulars.pages import NAVIGATION
from tests.browser.conftest import Served, screenshot, sign_in

WENT_OUT = ("sent", "delivered", "opened", "clicked")


@pytest.mark.parametrize("role", list(Role))
def test_each_role_sees_only_the_sections_it_may(new_page: Page, role: Role) -> None:
    sign_in(new_page, role)
    navigation = new_page.get_by_role("navigation", name="Main")
    for item in NAVIGATION:
        link = navigation.get_by_role("link", name=item.label, exact=True)
        if item.permission in ROLE_PERMISSIONS[role]:
            expect(link).to_be_visible()
        else:
            expect(link).to_have_count(0)
    expect(new_page.locator(".who")).to_contain_text(role.value)
    screenshot(new_page, f"overview-{role.value}")
    new_page.goto("/settings")
    if role in (Role.OWNER, Role.ADMIN):
        expect(new_page.locator("h1")).not_to_have_text("Not for your role")
    else:
        expect(new_page.locator("h1")).to_have_text("Not for your role")


def test_an_agent_finds_a_customer_and_reads_the_whole_timeline(
    new_page: Page, served: Served
) -> None:
    ((customer_id, first, last, events),) = served.query(
        "SELECT c.id, c.first_name, c.last_name, count(*) FROM events e "
        "JOIN customers c ON c.id = e.customer_id GROUP BY c.id ORDER BY count(*) DESC, c.id "
        "LIMIT 1"
    )
    assert events > 50  # more than one page of timeline, or the scroll proves nothing
    sign_in(new_page, Role.AGENT)
    new_page.get_by_role("link", name="Customers", exact=True).click()
    new_page.get_by_label("Search").fill(last[:4])
    result = new_page.locator("#results").get_by_role("link", name=f"{first} {last}")
    expect(result).to_be_visible()
    screenshot(new_page, "customers-search")
    result.click()
    expect(new_page).to_have_url(f"{served.url}/customers/{customer_id}")
    expect(new_page.locator("h1")).to_contain_text(f"{first} {last}")
    items = new_page.locator("#timeline > li:not(.end)")
    loaded = 50
    expect(items).to_have_count(loaded)
    while loaded < events:  # revealing the last item loads the next page of 50
        items.last.scroll_into_view_if_needed()
        loaded = min(loaded + 50, events)
        expect(items).to_have_count(loaded)
    expect(new_page.get_by_text("The beginning of this timeline.")).to_be_visible()
    screenshot(new_page, "customer-profile")


def test_a_marketer_builds_a_segment_and_sees_its_count_change(
    new_page: Page, served: Served
) -> None:
    ((city, in_city),) = served.query(
        "SELECT json_extract(traits, '$.city') AS city, count(*) FROM customers "
        "WHERE city IS NOT NULL GROUP BY city ORDER BY count(*) DESC, city LIMIT 1"
    )
    ((in_two_cities,),) = served.query(
        "SELECT count(*) FROM customers WHERE json_extract(traits, '$.city') IN (?, 'Berlin')",
        city,
    )
    sign_in(new_page, Role.MARKETER)
    new_page.goto("/segments/new")
    new_page.get_by_label("Name", exact=True).fill("Our biggest city")
    new_page.get_by_label("Key", exact=True).fill("biggest-city")
    rule = new_page.locator("#rule")
    new_page.get_by_text("Edit JSON").click()
    rule.fill(f'{{"type": "profile", "field": "traits.city", "op": "equals", "value": "{city}"}}')
    rule.dispatch_event("input")
    expect(new_page.locator("#preview-count")).to_have_text(f"{in_city:,}")
    rule.fill(
        f'{{"type": "profile", "field": "traits.city", "op": "in", "value": ["{city}", "Berlin"]}}'
    )
    rule.dispatch_event("input")
    expect(new_page.locator("#preview-count")).to_have_text(f"{in_two_cities:,}")
    screenshot(new_page, "segment-builder")
    new_page.get_by_role("button", name="Save segment").click()
    expect(new_page).to_have_url(f"{served.url}/segments/biggest-city")
    screenshot(new_page, "segment")


def test_a_marketer_edits_a_template_and_sees_the_preview(new_page: Page, served: Served) -> None:
    ((email, first),) = served.query(
        "SELECT email, first_name FROM customers WHERE email IS NOT NULL AND first_name IS NOT "
        "NULL AND (locale IS NULL OR locale LIKE 'en%') ORDER BY id LIMIT 1"
    )
    sign_in(new_page, Role.MARKETER)
    new_page.goto("/messages/templates/order_confirmed/sms")
    new_page.locator("input[name=customer]").fill(email)
    # The saved body needs the order event, which a preview for a customer alone lacks.
    expect(new_page.locator("#preview .alert")).to_contain_text("order_id")
    # Typing is enough: the preview follows the unsaved text.
    new_page.locator("textarea[name=f_body]").fill(
        "Hi {{ customer.first_name }}, your beans are roasting."
    )
    expect(new_page.locator("#preview .bubble")).to_have_text(
        f"Hi {first}, your beans are roasting."
    )
    expect(new_page.locator("#preview")).to_contain_text("1 segment")
    screenshot(new_page, "template-preview")


def test_a_marketer_sends_a_broadcast_to_the_sandbox_and_reads_it_there(
    new_page: Page, served: Served
) -> None:
    # A segment of the store's own (the built-in RFM ones move when the worker rescores).
    ((segment_key,),) = served.query(
        "SELECT key FROM segments WHERE NOT builtin AND members_count BETWEEN 2 AND 20 "
        "ORDER BY members_count, key LIMIT 1"
    )
    sign_in(new_page, Role.MARKETER)
    new_page.goto("/messages/broadcasts")
    form = new_page.locator("form[action='/messages/broadcasts']")
    form.get_by_label("Name").fill("Browser test newsletter")
    form.locator("select[name=segment]").select_option(segment_key)
    form.locator("select[name=template]").select_option("newsletter")
    form.locator("select[name=channel]").select_option("inapp")
    form.get_by_role("button", name="Create broadcast").click()
    expect(new_page.locator("h1")).to_contain_text("Browser test newsletter")
    screenshot(new_page, "broadcast")
    settled = _broadcast_outcome(served, "Browser test newsletter")
    # Policies may refuse a member (the demo's journeys already spent someone's weekly cap):
    # each refusal names its reason, and the outbox holds exactly the messages that went out.
    sent = [(delivery, locale) for delivery, status, _, locale in settled if status in WENT_OUT]
    refused = [(status, reason) for _, status, reason, _ in settled if status not in WENT_OUT]
    assert sent, f"every member was refused: {refused}"
    assert all(status == "suppressed" and reason for status, reason in refused), refused
    new_page.goto("/messages/outbox?channel=inapp")
    for delivery, _ in sent:
        expect(
            new_page.locator(f"tr.outbox-row a[href='/messages/outbox/{delivery}']")
        ).to_have_count(2)
    # Read as the customer would: in their own language (the demo's newsletter has a German
    # translation for de-* customers).
    delivery, locale = sent[0]
    new_page.locator(f"a[href='/messages/outbox/{delivery}']").last.click()
    body = (
        "Guji und eine Sumatra-Mischung."
        if locale.startswith("de")
        else "Guji and a Sumatra blend."
    )
    expect(new_page.get_by_text(body)).to_be_visible()
    screenshot(new_page, "outbox-message")


def _broadcast_outcome(served: Served, name: str) -> list[tuple[str, str, str | None, str]]:
    """(delivery, status, reason, the customer's locale) of each delivery of the broadcast,
    once it has queued one per member of its audience and none is pending. The server's
    worker sends in the background, so this looks again until it has."""
    deadline = time.monotonic() + 60
    while True:
        ((status, audience),) = served.query(
            "SELECT status, audience FROM broadcasts WHERE name = ?", name
        )
        rows = served.query(
            "SELECT d.id, d.status, d.reason, coalesce(c.locale, '') FROM deliveries d "
            "JOIN broadcasts b ON b.id = d.broadcast_id "
            "JOIN customers c ON c.id = d.customer_id WHERE b.name = ?",
            name,
        )
        pending = [row for row in rows if row[1] in ("queued", "deferred", "sending")]
        settled = status == "sent" and len(rows) == audience and not pending
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert settled and audience > 0, (status, audience, rows)
    return [(str(d), str(status), reason, str(locale)) for d, status, reason, locale in rows]


def test_an_analyst_opens_a_journey_graph(new_page: Page, served: Served) -> None:
    ((definition,),) = served.query(
        "SELECT v.definition FROM journey_versions v JOIN journeys j ON j.id = v.journey_id "
        "WHERE j.key = 'welcome' ORDER BY v.version DESC LIMIT 1"
    )
    node_ids = list(json.loads(definition)["nodes"])
    sign_in(new_page, Role.ANALYST)
    new_page.get_by_role("link", name="Journeys", exact=True).click()
    new_page.get_by_role("link", name="welcome").first.click()
    chart = new_page.locator(".chart svg")
    expect(chart).to_be_visible()
    for node_id in node_ids:  # every node of the definition is drawn, labelled with its id
        expect(chart.locator("text", has_text=f" · {node_id}").first).to_be_attached()
    expect(new_page.get_by_role("button", name="Pause")).to_have_count(0)
    screenshot(new_page, "journey-graph")


PAGES = (
    "/",
    "/segments/newsletter-subscribers",
    "/journeys/abandoned-checkout",
    "/messages/templates/order_confirmed/email",
    "/customers",
    "/segments",
    "/messages/templates",
    "/messages/broadcasts",
    "/messages/deliveries",
    "/messages/outbox",
    "/journeys",
    "/settings",
    "/settings/users",
    "/settings/providers",
    "/settings/policies",
    "/account",
)


@pytest.mark.parametrize(("screen", "width"), [("desktop", 1280), ("phone", 390)])
def test_every_page_answers_and_fits_the_screen(new_page: Page, screen: str, width: int) -> None:
    sign_in(new_page, Role.OWNER)
    new_page.set_viewport_size({"width": width, "height": 844})
    too_wide = []
    for path in PAGES:
        answer = new_page.goto(path)
        assert answer is not None and answer.status == 200, path
        overflow = new_page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        if overflow > 0:
            too_wide.append(f"{path}: {overflow}px wider than the screen")
        screenshot(new_page, f"{screen}{path.replace('/', '-').rstrip('-') or '-overview'}")
    assert not too_wide, "\n".join(too_wide)


def test_sign_in_works_from_the_keyboard(new_page: Page) -> None:
    new_page.goto("/login")
    new_page.keyboard.type("marketer@demo.regulars.dev")  # the email field has focus
    new_page.keyboard.press("Tab")
    new_page.keyboard.type("regulars-demo")
    new_page.keyboard.press("Enter")
    expect(new_page.locator(".who")).to_contain_text("marketer")
