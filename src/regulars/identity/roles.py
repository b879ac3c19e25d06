"""What each staff role may do: pure rules, no database.

Every API route and dashboard page names one `Permission`. A staff user may use it when their
role grants it (`ROLE_PERMISSIONS`); an API key may when its scope reaches the permission's
`api_scope`, so keys keep the read < write < admin ladder they always had.
"""

from __future__ import annotations

from enum import StrEnum

from regulars.identity.models import ApiKeyScope, Role


class Permission(StrEnum):
    CUSTOMERS_READ = "customers:read"
    CUSTOMERS_WRITE = "customers:write"
    CUSTOMERS_ADMIN = "customers:admin"  # export and erase a whole profile
    SEGMENTS_READ = "segments:read"
    SEGMENTS_WRITE = "segments:write"
    MESSAGES_READ = "messages:read"  # templates, deliveries, broadcasts, the sandbox outbox
    MESSAGES_SEND = "messages:send"  # one transactional message to one customer
    MESSAGES_WRITE = "messages:write"  # templates and broadcasts
    JOURNEYS_READ = "journeys:read"
    JOURNEYS_WRITE = "journeys:write"
    SETTINGS_MANAGE = "settings:manage"  # sources, API keys, channel providers
    USERS_MANAGE = "users:manage"

    @property
    def api_scope(self) -> ApiKeyScope:
        """The API-key scope that grants this permission."""
        if self.value.endswith(":read"):
            return ApiKeyScope.READ
        if self in _ADMIN_ONLY:
            return ApiKeyScope.ADMIN
        return ApiKeyScope.WRITE


_ADMIN_ONLY = frozenset(
    {Permission.CUSTOMERS_ADMIN, Permission.SETTINGS_MANAGE, Permission.USERS_MANAGE}
)
_READS = frozenset(p for p in Permission if p.api_scope is ApiKeyScope.READ)

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission),
    Role.ADMIN: frozenset(Permission),
    Role.MARKETER: _READS
    | {
        Permission.CUSTOMERS_WRITE,
        Permission.SEGMENTS_WRITE,
        Permission.MESSAGES_SEND,
        Permission.MESSAGES_WRITE,
        Permission.JOURNEYS_WRITE,
    },
    Role.AGENT: frozenset(
        {
            Permission.CUSTOMERS_READ,
            Permission.CUSTOMERS_WRITE,
            Permission.SEGMENTS_READ,
            Permission.MESSAGES_READ,
            Permission.MESSAGES_SEND,
            Permission.JOURNEYS_READ,
        }
    ),
    Role.ANALYST: _READS,
}

ROLE_SUMMARIES: dict[Role, str] = {
    Role.OWNER: "everything, including other owners",
    Role.ADMIN: "everything but owners: users, settings, keys, providers, exports",
    Role.MARKETER: "segments, templates, broadcasts and journeys; reads every customer",
    Role.AGENT: "customers (read and edit), sends one message to one customer; reads the rest",
    Role.ANALYST: "reads everything but settings; changes nothing",
}


def role_allows(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[Role(role)]


def may_manage(actor: Role, target: Role) -> bool:
    """Whether a user with role `actor` may create, change or disable a user with role `target`
    (or give someone that role): owners manage everyone, admins everyone but owners."""
    if not role_allows(actor, Permission.USERS_MANAGE):
        return False
    return Role(actor) is Role.OWNER or Role(target) is not Role.OWNER
