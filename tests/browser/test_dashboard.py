"""The dashboard in real Chromium: each role signs in and sees only what it may; the main
tasks of each page done the way a person does them, with a screenshot of every page."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from regulars.identity.models import Role
from regulars.identity.roles import ROLE_PERMISSIONS
from regulars.pages import NAVIGATION
from tests.browser.conftest import screenshot, sign_in


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
