"""Staff users, their sign-ins and their sessions: the service behind the dashboard.

Passwords are hashed with argon2id (argon2-cffi's RFC 9106 profile). A session is a random
token in an HttpOnly cookie; the database keeps its SHA-256, so a leaked table opens nothing.
Sign-in is rate-limited per address and locked per email after repeated failures; both are
counted from `login_attempts`, so they hold across processes and restarts.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.errors import Conflict, Forbidden, NotFound, RegularsError, ValidationFailed
from regulars.identity import repository
from regulars.identity.models import LoginAttempt, Role, StaffSession, StaffUser
from regulars.identity.roles import may_manage
from regulars.kit import clock
from regulars.kit.ids import new_id, sha256_hex

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200
# A session's last_seen_at is refreshed at most this often, so page views don't each write.
SEEN_RESOLUTION = timedelta(minutes=1)

_hasher = PasswordHasher()
# Verified when the email is unknown, so a wrong email takes as long as a wrong password.
_DECOY_HASH = _hasher.hash("not a password anyone has")


class TooManyAttempts(RegularsError):
    code = "too_many_attempts"
    status = 429


@dataclass(frozen=True, slots=True)
class SignedIn:
    """What the dashboard needs about the caller, copied out of the session that found it."""

    user_id: str
    email: str
    name: str
    role: Role
    session_id: str
    csrf_token: str
    last_seen_at: datetime


def _email(email: str) -> str:
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValidationFailed(f"email {email!r} is not valid: {exc}") from exc


def _password_hash(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise ValidationFailed(
            f"a password has {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )
    return _hasher.hash(password)


def _name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise ValidationFailed("a name has 1 to 200 characters")
    return name


def create_user(
    session: Session,
    email: str,
    *,
    name: str,
    role: Role,
    password: str,
    actor: Role | None = None,
) -> StaffUser:
    """A new staff user; `actor` (the creating user's role; None: the command line) must be
    allowed to manage `role`."""
    _check_roles(actor, Role(role))
    email = _email(email)
    if repository.get_user_by_email(session, email) is not None:
        raise Conflict(f"a staff user with email {email} exists already")
    now = clock.now()
    user = StaffUser(
        id=new_id(),
        email=email,
        name=_name(name),
        role=Role(role),
        password_hash=_password_hash(password),
        created_at=now,
        updated_at=now,
        last_login_at=None,
        disabled_at=None,
    )
    repository.add(session, user)
    return user


def list_users(session: Session) -> Sequence[StaffUser]:
    return repository.list_users(session)


def get_user(session: Session, user: str) -> StaffUser:
    """A user by id or email; NotFound otherwise."""
    found = repository.get_user(session, user)
    if found is None and "@" in user:
        found = repository.get_user_by_email(session, user.strip().lower())
    if found is None:
        raise NotFound(f"no staff user {user!r}")
    return found


def _check_roles(actor: Role | None, *roles: Role | None) -> None:
    """None is the command line, run by whoever holds the server: it may do anything."""
    if actor is None:
        return
    for role in roles:
        if role is not None and not may_manage(actor, Role(role)):
            raise Forbidden(f"a user with role {actor} cannot manage a user with role {role}")


def _check_may_manage(actor: Role | None, target: StaffUser, new_role: Role | None = None) -> None:
    _check_roles(actor, Role(target.role), new_role)


def _keeps_an_owner(session: Session, user: StaffUser, *, losing: bool) -> None:
    if losing and user.role == Role.OWNER and repository.count_active_owners(session) <= 1:
        raise Conflict("this is the last active owner; make someone else owner first")


def set_role(session: Session, user: str, role: Role, *, actor: Role | None = None) -> StaffUser:
    role = Role(role)
    found = get_user(session, user)
    _check_may_manage(actor, found, role)
    _keeps_an_owner(session, found, losing=role is not Role.OWNER)
    found.role = role
    found.updated_at = clock.now()
    session.flush()
    return found


def disable_user(session: Session, user: str, *, actor: Role | None = None) -> StaffUser:
    """Disable a user and end every session they have; their history stays."""
    found = get_user(session, user)
    _check_may_manage(actor, found)
    _keeps_an_owner(session, found, losing=True)
    now = clock.now()
    if found.disabled_at is None:
        found.disabled_at = found.updated_at = now
    repository.revoke_sessions(session, found.id, at=now)
    session.flush()
    return found


def enable_user(session: Session, user: str, *, actor: Role | None = None) -> StaffUser:
    found = get_user(session, user)
    _check_may_manage(actor, found)
    found.disabled_at = None
    found.updated_at = clock.now()
    session.flush()
    return found


def reset_password(
    session: Session, user: str, password: str, *, actor: Role | None = None
) -> StaffUser:
    """Set a new password (an admin's reset) and sign the user out everywhere."""
    found = get_user(session, user)
    _check_may_manage(actor, found)
    found.password_hash = _password_hash(password)
    found.updated_at = clock.now()
    repository.revoke_sessions(session, found.id, at=found.updated_at)
    session.flush()
    return found


def generate_password() -> str:
    """A password to hand over once: 16 URL-safe characters, about 96 bits."""
    return secrets.token_urlsafe(12)


# --- signing in ------------------------------------------------------------------------------


def _check_rate(session: Session, email: str, ip: str, now: datetime) -> None:
    settings = get_settings()
    window = timedelta(minutes=settings.login_lockout_minutes)
    if repository.count_attempts_from(session, ip, since=now - window) >= (
        settings.login_max_attempts_per_ip
    ):
        raise TooManyAttempts(
            f"too many sign-in attempts from this address; try again in "
            f"{settings.login_lockout_minutes} minutes"
        )
    failures = repository.recent_failures_for(session, email, since=now - window)
    if len(failures) >= settings.login_max_failures:
        until = failures[-settings.login_max_failures] + window
        minutes = max(1, int((until - now).total_seconds() // 60) + 1)
        raise TooManyAttempts(
            f"this account is locked after {settings.login_max_failures} failed sign-ins; "
            f"try again in {minutes} minutes or ask an admin to reset the password"
        )


def _verified(user: StaffUser | None, password: str) -> bool:
    try:
        _hasher.verify(user.password_hash if user is not None else _DECOY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return user is not None and user.disabled_at is None


def sign_in(
    session: Session, email: str, password: str, *, ip: str, user_agent: str = ""
) -> tuple[StaffSession, str] | None:
    """A new session and its token (for the cookie) when the password is right, else None;
    a wrong email, a wrong password and a disabled account look alike. Every attempt is
    recorded (the caller commits it either way). Raises TooManyAttempts (429), recording
    nothing, when the address is rate-limited or the email locked."""
    now = clock.now()
    email = email.strip().lower()[:320]
    ip = ip[:64]
    _check_rate(session, email, ip, now)
    user = repository.get_user_by_email(session, email)
    ok = _verified(user, password[:MAX_PASSWORD_LENGTH])
    repository.add(session, LoginAttempt(email=email, ip=ip, succeeded=ok, at=now))
    if not ok or user is None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = now
    return _open_session(session, user, ip=ip, user_agent=user_agent, now=now)


def _open_session(
    session: Session, user: StaffUser, *, ip: str, user_agent: str, now: datetime
) -> tuple[StaffSession, str]:
    token = secrets.token_urlsafe(32)
    settings = get_settings()
    row = StaffSession(
        id=new_id(),
        token_hash=sha256_hex(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(days=settings.session_max_days),
        revoked_at=None,
        ip=ip,
        user_agent=user_agent[:300],
    )
    repository.add(session, row)
    return row, token


def session_for(session: Session, token: str) -> SignedIn | None:
    """Who holds this session token, when the session is live: not revoked, not past its
    absolute end, not idle too long, and its user not disabled. Reads only: the caller
    records the visit with `touch` when `needs_touch` says so (once a minute at most)."""
    if not token or len(token) > 100:
        return None
    found = repository.get_session_with_user(session, sha256_hex(token))
    if found is None:
        return None
    row, user = found
    now = clock.now()
    idle = timedelta(hours=get_settings().session_idle_hours)
    if row.revoked_at is not None or now >= row.expires_at or now - row.last_seen_at >= idle:
        return None
    if user.disabled_at is not None:
        return None
    return SignedIn(
        user.id, user.email, user.name, Role(user.role), row.id, row.csrf_token, row.last_seen_at
    )


def needs_touch(signed: SignedIn, *, at: datetime) -> bool:
    return at - signed.last_seen_at >= SEEN_RESOLUTION


def touch(session: Session, session_id: str, *, at: datetime) -> None:
    """Record a visit: the idle timeout counts from here."""
    repository.touch_session(session, session_id, at=at)


def sign_out(session: Session, session_id: str) -> None:
    repository.revoke_session(session, session_id, at=clock.now())


def sign_out_everywhere(session: Session, user_id: str) -> int:
    """End every session of this user; answers how many were live."""
    return repository.revoke_sessions(session, user_id, at=clock.now())


def ensure_user(session: Session, email: str, *, name: str, role: Role, password: str) -> StaffUser:
    """The user with this email, created when missing (the demo's staff)."""
    existing = repository.get_user_by_email(session, _email(email))
    if existing is not None:
        return existing
    return create_user(session, email, name=name, role=role, password=password)
