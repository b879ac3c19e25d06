"""Queries on sources and API keys. Only this module builds identity queries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, select, update
from sqlalchemy.orm import Session

from regulars.db import prepared, table_of
from regulars.identity.models import (
    ApiKey,
    LoginAttempt,
    Role,
    Source,
    StaffSession,
    StaffUser,
)


def add(session: Session, row: Source | ApiKey | StaffUser | StaffSession | LoginAttempt) -> None:
    session.add(row)
    session.flush()


def get_source_by_name(session: Session, name: str) -> Source | None:
    return session.scalars(select(Source).where(Source.name == name)).one_or_none()


def get_source_by_write_key(session: Session, write_key: str) -> Source | None:
    return session.scalars(select(Source).where(Source.write_key == write_key)).one_or_none()


def enabled_source_id(session: Session, write_key: str) -> str | None:
    """The id of the enabled source with this write key: one lookup on its unique index, with
    a Core statement built once, run on the session's connection (the ORM's way through
    `session.execute` cost twice the lookup itself), since ingestion asks it on every
    request."""
    query = prepared(session, ("identity.enabled_source_id",), _enabled_source_query)
    source_id: str | None = session.connection().execute(query, {"write_key": write_key}).scalar()
    return source_id


def _enabled_source_query() -> Select[Any]:
    sources = table_of(Source)
    return select(sources.c.id).where(
        sources.c.write_key == bindparam("write_key"), sources.c.disabled_at.is_(None)
    )


def list_sources(session: Session) -> Sequence[Source]:
    return session.scalars(select(Source).order_by(Source.created_at, Source.id)).all()


def get_api_key(session: Session, api_key_id: str) -> ApiKey | None:
    return session.get(ApiKey, api_key_id)


def get_api_key_by_hash(session: Session, key_hash: str) -> ApiKey | None:
    return session.scalars(select(ApiKey).where(ApiKey.key_hash == key_hash)).one_or_none()


def list_api_keys(session: Session) -> Sequence[ApiKey]:
    return session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)).all()


# --- staff users, sessions, sign-in attempts ---------------------------------------------------


def get_user(session: Session, user_id: str) -> StaffUser | None:
    return session.get(StaffUser, user_id)


def get_user_by_email(session: Session, email: str) -> StaffUser | None:
    return session.scalars(select(StaffUser).where(StaffUser.email == email)).one_or_none()


def list_users(session: Session) -> Sequence[StaffUser]:
    return session.scalars(select(StaffUser).order_by(StaffUser.created_at, StaffUser.id)).all()


def count_active_owners(session: Session) -> int:
    query = select(func.count()).where(
        StaffUser.role == Role.OWNER.value, StaffUser.disabled_at.is_(None)
    )
    return int(session.scalar(query) or 0)


def get_session_with_user(
    session: Session, token_hash: str
) -> tuple[StaffSession, StaffUser] | None:
    query = (
        select(StaffSession, StaffUser)
        .join(StaffUser, StaffUser.id == StaffSession.user_id)
        .where(StaffSession.token_hash == token_hash)
    )
    row = session.execute(query).one_or_none()
    return None if row is None else (row[0], row[1])


def touch_session(session: Session, session_id: str, *, at: datetime) -> None:
    session.execute(
        update(StaffSession).where(StaffSession.id == session_id).values(last_seen_at=at)
    )


def revoke_session(session: Session, session_id: str, *, at: datetime) -> None:
    session.execute(
        update(StaffSession)
        .where(StaffSession.id == session_id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=at)
    )


def revoke_sessions(session: Session, user_id: str, *, at: datetime) -> int:
    result = session.execute(
        update(StaffSession)
        .where(StaffSession.user_id == user_id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def count_attempts_from(session: Session, ip: str, *, since: datetime) -> int:
    query = select(func.count()).where(LoginAttempt.ip == ip, LoginAttempt.at >= since)
    return int(session.scalar(query) or 0)


def recent_failures_for(session: Session, email: str, *, since: datetime) -> list[datetime]:
    """Failed attempts for this email since `since` and since its last success, oldest first."""
    last_success = (
        select(func.max(LoginAttempt.at))
        .where(LoginAttempt.email == email, LoginAttempt.succeeded.is_(True))
        .scalar_subquery()
    )
    query = (
        select(LoginAttempt.at)
        .where(
            LoginAttempt.email == email,
            LoginAttempt.succeeded.is_(False),
            LoginAttempt.at >= since,
            LoginAttempt.at > func.coalesce(last_success, since),
        )
        .order_by(LoginAttempt.at)
    )
    return list(session.scalars(query))
