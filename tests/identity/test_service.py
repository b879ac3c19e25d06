"""Sources, API keys and scopes on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from regulars.db import Database, session_scope
from regulars.errors import Conflict, NotFound, ValidationFailed
from regulars.identity import service
from regulars.identity.models import ApiKey, ApiKeyScope, Source
from regulars.kit import clock
from regulars.kit.ids import sha256_hex


def test_create_source_makes_a_write_key_found_by_lookup(database: Database) -> None:
    with session_scope() as session:
        source = service.create_source(session, "  web  ")
        write_key = source.write_key
    assert write_key.startswith("wk_") and len(write_key) > 20
    with session_scope(readonly=True) as session:
        found = service.get_source_by_write_key(session, write_key)
        assert found is not None and found.name == "web"
        assert service.get_source_by_write_key(session, write_key + "x") is None
        assert [s.name for s in service.list_sources(session)] == ["web"]


def test_a_disabled_source_is_not_found_by_its_write_key(database: Database) -> None:
    with session_scope() as session:
        write_key = service.create_source(session, "ios").write_key
    with session_scope() as session:
        source = session.scalars(select(Source)).one()
        source.disabled_at = clock.now()
    with session_scope(readonly=True) as session:
        assert service.get_source_by_write_key(session, write_key) is None


def test_enabled_source_id_finds_the_source_of_a_key_until_it_is_disabled(
    database: Database,
) -> None:
    with session_scope() as session:
        web = service.create_source(session, "web")
        web_id, write_key = web.id, web.write_key
        service.create_source(session, "ios")
    with session_scope(readonly=True) as session:
        assert service.enabled_source_id(session, write_key) == web_id
        assert service.enabled_source_id(session, write_key[:-1]) is None
    with session_scope() as session:
        session.scalars(select(Source).where(Source.id == web_id)).one().disabled_at = clock.now()
    with session_scope(readonly=True) as session:
        assert service.enabled_source_id(session, write_key) is None


def test_source_names_are_unique_and_not_blank(database: Database) -> None:
    with session_scope() as session:
        service.create_source(session, "web")
    with pytest.raises(Conflict, match="exists already"), session_scope() as session:
        service.create_source(session, "web")
    with pytest.raises(ValidationFailed), session_scope() as session:
        service.create_source(session, "   ")


def test_api_key_is_returned_once_and_only_its_hash_is_stored(database: Database) -> None:
    with session_scope() as session:
        api_key, secret = service.create_api_key(session, "crm", ApiKeyScope.WRITE)
        api_key_id = api_key.id
    assert secret.startswith("rk_")
    with session_scope(readonly=True) as session:
        stored = session.scalars(select(ApiKey)).one()
        assert stored.key_hash == sha256_hex(secret)
        assert secret not in (stored.key_hash, stored.prefix, stored.name)
        assert secret.startswith(stored.prefix)
        found = service.authenticate(session, secret)
        assert found is not None and found.id == api_key_id
        assert found.scope == ApiKeyScope.WRITE
        assert service.authenticate(session, secret[:-1]) is None


def test_a_revoked_key_no_longer_authenticates(database: Database) -> None:
    with session_scope() as session:
        api_key, secret = service.create_api_key(session, "old", ApiKeyScope.READ)
        api_key_id = api_key.id
    with session_scope() as session:
        first = service.revoke_api_key(session, api_key_id).revoked_at
    with session_scope() as session:
        again = service.revoke_api_key(session, api_key_id).revoked_at
    assert first is not None and again == first
    with session_scope(readonly=True) as session:
        assert service.authenticate(session, secret) is None
        assert [k.revoked_at for k in service.list_api_keys(session)] == [first]
    with pytest.raises(NotFound), session_scope() as session:
        service.revoke_api_key(session, "nope")


def test_last_use_is_recorded_at_most_once_a_minute(database: Database) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with session_scope() as session:
        api_key, _secret = service.create_api_key(session, "k", ApiKeyScope.READ)
        assert service.needs_use_recorded(api_key, at=t0)
        service.record_use(session, api_key.id, at=t0)
        assert not service.needs_use_recorded(api_key, at=t0 + timedelta(seconds=59))
        assert service.needs_use_recorded(api_key, at=t0 + timedelta(seconds=60))
    with session_scope(readonly=True) as session:
        assert session.scalars(select(ApiKey.last_used_at)).one() == t0


@pytest.mark.parametrize(
    ("granted", "needed", "allowed"),
    [
        (ApiKeyScope.READ, ApiKeyScope.READ, True),
        (ApiKeyScope.READ, ApiKeyScope.WRITE, False),
        (ApiKeyScope.READ, ApiKeyScope.ADMIN, False),
        (ApiKeyScope.WRITE, ApiKeyScope.READ, True),
        (ApiKeyScope.WRITE, ApiKeyScope.WRITE, True),
        (ApiKeyScope.WRITE, ApiKeyScope.ADMIN, False),
        (ApiKeyScope.ADMIN, ApiKeyScope.READ, True),
        (ApiKeyScope.ADMIN, ApiKeyScope.WRITE, True),
        (ApiKeyScope.ADMIN, ApiKeyScope.ADMIN, True),
    ],
)
def test_scopes_rank_read_below_write_below_admin(
    granted: ApiKeyScope, needed: ApiKeyScope, allowed: bool
) -> None:
    assert service.allows(granted, needed) is allowed
