"""Sources (write keys for ingestion) and API keys (secrets for the REST API).

Services take a session and plain values, flush and never commit: the caller's
`session_scope()` is the unit of work.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from regulars.errors import Conflict, NotFound, ValidationFailed
from regulars.identity import repository
from regulars.identity.models import SCOPE_RANK, ApiKey, ApiKeyScope, Source
from regulars.kit import clock
from regulars.kit.ids import new_id, new_secret, sha256_hex

WRITE_KEY_PREFIX = "wk"
API_KEY_PREFIX = "rk"
SHOWN_PREFIX_LENGTH = 10  # "rk_" and 7 characters: enough to tell keys apart in a list
MAX_NAME_LENGTH = 100
# last_used_at is refreshed at most this often, so reads don't each become a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _checked_name(name: str, what: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValidationFailed(f"{what} name must be 1 to {MAX_NAME_LENGTH} characters")
    return name


def create_source(session: Session, name: str) -> Source:
    """A new source with a fresh write key (`wk_...`), the HTTP Basic user of the tracking API."""
    name = _checked_name(name, "source")
    if repository.get_source_by_name(session, name) is not None:
        raise Conflict(f"a source named {name!r} exists already")
    source = Source(
        id=new_id(),
        name=name,
        write_key=new_secret(WRITE_KEY_PREFIX),
        created_at=clock.now(),
        disabled_at=None,
    )
    repository.add(session, source)
    return source


def get_or_create_source(session: Session, name: str) -> Source:
    """The source named `name`, created when missing (the demo's and the importer's)."""
    existing = repository.get_source_by_name(session, _checked_name(name, "source"))
    return existing if existing is not None else create_source(session, name)


def list_sources(session: Session) -> Sequence[Source]:
    return repository.list_sources(session)


def get_source_by_write_key(session: Session, write_key: str) -> Source | None:
    """The enabled source this write key belongs to; None for unknown or disabled keys."""
    source = repository.get_source_by_write_key(session, write_key)
    if source is None or source.disabled_at is not None:
        return None
    return source


def enabled_source_id(session: Session, write_key: str) -> str | None:
    """The id of the enabled source this write key belongs to (what ingestion needs on every
    request); None for unknown or disabled keys."""
    return repository.enabled_source_id(session, write_key)


def create_api_key(session: Session, name: str, scope: ApiKeyScope) -> tuple[ApiKey, str]:
    """A new API key and its secret. Only the SHA-256 is stored: show the secret once."""
    name = _checked_name(name, "API key")
    secret = new_secret(API_KEY_PREFIX)
    api_key = ApiKey(
        id=new_id(),
        name=name,
        prefix=secret[:SHOWN_PREFIX_LENGTH],
        key_hash=sha256_hex(secret),
        scope=ApiKeyScope(scope),
        created_at=clock.now(),
        last_used_at=None,
        revoked_at=None,
    )
    repository.add(session, api_key)
    return api_key, secret


def list_api_keys(session: Session) -> Sequence[ApiKey]:
    return repository.list_api_keys(session)


def revoke_api_key(session: Session, api_key_id: str) -> ApiKey:
    """Revoke a key for good; revoking a revoked key is a no-op that keeps the first date."""
    api_key = repository.get_api_key(session, api_key_id)
    if api_key is None:
        raise NotFound(f"no API key with id {api_key_id!r}")
    if api_key.revoked_at is None:
        api_key.revoked_at = clock.now()
        session.flush()
    return api_key


def authenticate(session: Session, key: str) -> ApiKey | None:
    """The live API key whose secret this is; None for unknown or revoked keys."""
    api_key = repository.get_api_key_by_hash(session, sha256_hex(key))
    if api_key is None or api_key.revoked_at is not None:
        return None
    return api_key


def needs_use_recorded(api_key: ApiKey, *, at: datetime) -> bool:
    last = api_key.last_used_at
    return last is None or at - last >= LAST_USED_RESOLUTION


def record_use(session: Session, api_key_id: str, *, at: datetime) -> None:
    api_key = repository.get_api_key(session, api_key_id)
    if api_key is not None:
        api_key.last_used_at = at
        session.flush()


def allows(granted: ApiKeyScope, needed: ApiKeyScope) -> bool:
    """Scopes rank read < write < admin: a key may do what its scope and every lower one may."""
    return SCOPE_RANK[ApiKeyScope(granted)] >= SCOPE_RANK[needed]
