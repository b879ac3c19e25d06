"""Staff users, sign-in and sessions (regulars.identity.staff), on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from starlette.requests import Request

from regulars.db import Database, session_scope
from regulars.errors import Conflict, Forbidden, ValidationFailed
from regulars.identity import staff
from regulars.identity.models import Role
from regulars.identity.staff import TooManyAttempts
from regulars.kit import clock
from regulars.kit.clock import FrozenClock
from regulars.pages import SESSION_COOKIE, signed_in

PASSWORD = "a long enough password"
START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture
def moved(database: Database) -> Iterator[FrozenClock]:
    with clock.frozen(START) as frozen:
        yield frozen


def _user(email: str = "mia@shop.example", role: Role = Role.MARKETER) -> str:
    with session_scope() as session:
        return staff.create_user(session, email, name="Mia", role=role, password=PASSWORD).id


def _sign_in(email: str, password: str = PASSWORD, ip: str = "10.0.0.1") -> str | None:
    with session_scope() as session:
        opened = staff.sign_in(session, email, password, ip=ip)
    return None if opened is None else opened[1]


def _who(token: str) -> staff.SignedIn | None:
    """Who a request with this session cookie is, as every dashboard request asks it (the
    lookup records the visit, which the idle timeout counts from)."""
    cookie = f"{SESSION_COOKIE}={token}".encode()
    return signed_in(Request({"type": "http", "headers": [(b"cookie", cookie)]}))


def test_the_password_is_kept_as_an_argon2id_hash_only(moved: FrozenClock) -> None:
    _user()
    with session_scope() as session:
        stored = staff.get_user(session, "mia@shop.example").password_hash
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert PasswordHasher().verify(stored, PASSWORD)


def test_sign_in_opens_a_session_that_names_the_user_and_role(moved: FrozenClock) -> None:
    user_id = _user(email="Mia@Shop.example")
    token = _sign_in("MIA@shop.example")
    assert token is not None
    who = _who(token)
    assert who is not None
    assert (who.user_id, who.email, who.role) == (user_id, "mia@shop.example", Role.MARKETER)
    assert len(who.csrf_token) >= 32


def test_wrong_password_unknown_email_and_disabled_user_are_refused_alike(
    moved: FrozenClock,
) -> None:
    _user()
    assert _sign_in("mia@shop.example", "not the password") is None
    assert _sign_in("nobody@shop.example") is None
    with session_scope() as session:
        staff.disable_user(session, "mia@shop.example")
    assert _sign_in("mia@shop.example") is None


def test_five_failures_lock_the_email_until_the_window_passes(moved: FrozenClock) -> None:
    _user()
    for _ in range(5):
        assert _sign_in("mia@shop.example", "wrong password!") is None
    with pytest.raises(TooManyAttempts, match="locked after 5 failed sign-ins"):
        _sign_in("mia@shop.example")  # the right password, too late
    moved.advance(timedelta(minutes=15, seconds=1))
    assert _sign_in("mia@shop.example") is not None


def test_the_lock_holds_for_emails_that_do_not_exist_too(moved: FrozenClock) -> None:
    for _ in range(5):
        assert _sign_in("ghost@shop.example", "whatever it is") is None
    with pytest.raises(TooManyAttempts):
        _sign_in("ghost@shop.example")


def test_a_success_resets_the_count_of_failures(moved: FrozenClock) -> None:
    _user()
    for _ in range(4):
        _sign_in("mia@shop.example", "wrong password!")
    assert _sign_in("mia@shop.example") is not None
    for _ in range(4):
        _sign_in("mia@shop.example", "wrong password!")
    assert _sign_in("mia@shop.example") is not None


def test_one_address_is_rate_limited_across_emails(
    moved: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from regulars.config import reset_settings

    monkeypatch.setenv("REGULARS_LOGIN_MAX_ATTEMPTS_PER_IP", "3")
    reset_settings()
    try:
        _user()
        for number in range(3):
            _sign_in(f"guess{number}@shop.example", ip="192.0.2.7")
        with pytest.raises(TooManyAttempts, match="from this address"):
            _sign_in("mia@shop.example", ip="192.0.2.7")
        assert _sign_in("mia@shop.example", ip="192.0.2.8") is not None
    finally:
        monkeypatch.delenv("REGULARS_LOGIN_MAX_ATTEMPTS_PER_IP")
        reset_settings()


def test_a_session_ends_when_idle_too_long(moved: FrozenClock) -> None:
    _user()
    token = _sign_in("mia@shop.example")
    assert token is not None
    moved.advance(timedelta(hours=11, minutes=59))
    assert _who(token) is not None  # the visit refreshes last_seen_at
    moved.advance(timedelta(hours=11, minutes=59))
    assert _who(token) is not None
    moved.advance(timedelta(hours=12))
    assert _who(token) is None


def test_a_session_ends_after_fourteen_days_however_active(moved: FrozenClock) -> None:
    _user()
    token = _sign_in("mia@shop.example")
    assert token is not None
    for _ in range(13 * 2):
        moved.advance(timedelta(hours=12) - timedelta(minutes=1))
        assert _who(token) is not None
    moved.advance(timedelta(days=2))
    assert _who(token) is None


def test_sign_out_everywhere_ends_every_session_of_the_user_only(moved: FrozenClock) -> None:
    user_id = _user()
    _user(email="leo@shop.example")
    laptop, phone = _sign_in("mia@shop.example"), _sign_in("mia@shop.example")
    other = _sign_in("leo@shop.example")
    assert laptop and phone and other
    with session_scope() as session:
        assert staff.sign_out_everywhere(session, user_id) == 2
    assert _who(laptop) is None and _who(phone) is None
    assert _who(other) is not None


def test_reset_password_and_disable_end_the_sessions(moved: FrozenClock) -> None:
    _user()
    token = _sign_in("mia@shop.example")
    assert token is not None
    with session_scope() as session:
        staff.reset_password(session, "mia@shop.example", "a brand new password")
    assert _who(token) is None
    assert _sign_in("mia@shop.example") is None
    token = _sign_in("mia@shop.example", "a brand new password")
    assert token is not None
    with session_scope() as session:
        staff.disable_user(session, "mia@shop.example")
    assert _who(token) is None


def test_an_admin_cannot_manage_owners_and_the_last_owner_stays(moved: FrozenClock) -> None:
    _user(email="olga@shop.example", role=Role.OWNER)
    _user(email="adam@shop.example", role=Role.ADMIN)
    with session_scope() as session, pytest.raises(Forbidden):
        staff.disable_user(session, "olga@shop.example", actor=Role.ADMIN)
    with session_scope() as session, pytest.raises(Forbidden):
        staff.set_role(session, "adam@shop.example", Role.OWNER, actor=Role.ADMIN)
    with session_scope() as session, pytest.raises(Conflict, match="last active owner"):
        staff.set_role(session, "olga@shop.example", Role.ADMIN, actor=Role.OWNER)
    with session_scope() as session:
        staff.set_role(session, "adam@shop.example", Role.OWNER, actor=Role.OWNER)
        staff.set_role(session, "olga@shop.example", Role.ADMIN, actor=Role.OWNER)
    with session_scope(readonly=True) as session:
        assert staff.get_user(session, "olga@shop.example").role == Role.ADMIN


def test_bad_input_is_refused_with_what_to_fix(moved: FrozenClock) -> None:
    with session_scope() as session, pytest.raises(ValidationFailed, match="10 to 200"):
        staff.create_user(session, "a@shop.example", name="A", role=Role.AGENT, password="short")
    with session_scope() as session, pytest.raises(ValidationFailed, match="not valid"):
        staff.create_user(session, "not-an-email", name="A", role=Role.AGENT, password=PASSWORD)
    _user()
    with session_scope() as session, pytest.raises(Conflict, match="exists already"):
        staff.create_user(
            session, "MIA@shop.example", name="Mia", role=Role.AGENT, password=PASSWORD
        )
