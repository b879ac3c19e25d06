"""Queries on sources and API keys. Only this module builds identity queries."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from regulars.identity.models import ApiKey, Source


def add(session: Session, row: Source | ApiKey) -> None:
    session.add(row)
    session.flush()


def get_source_by_name(session: Session, name: str) -> Source | None:
    return session.scalars(select(Source).where(Source.name == name)).one_or_none()


def get_source_by_write_key(session: Session, write_key: str) -> Source | None:
    """One lookup on the unique index of `write_key` (ingestion calls this on every request)."""
    return session.scalars(select(Source).where(Source.write_key == write_key)).one_or_none()


def list_sources(session: Session) -> Sequence[Source]:
    return session.scalars(select(Source).order_by(Source.created_at, Source.id)).all()


def get_api_key(session: Session, api_key_id: str) -> ApiKey | None:
    return session.get(ApiKey, api_key_id)


def get_api_key_by_hash(session: Session, key_hash: str) -> ApiKey | None:
    return session.scalars(select(ApiKey).where(ApiKey.key_hash == key_hash)).one_or_none()


def list_api_keys(session: Session) -> Sequence[ApiKey]:
    return session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)).all()
