"""The customers domain's public verbs: what API, CLI, tasks and other domains call.

The work lives in sub-modules by concern: `ingest` (the set-based ingestion engine),
`profiles` (identify data, consents, merges), `reads` (what the API shows) and `privacy`
(GDPR export and erasure).
"""

from regulars.customers.changes import (
    CustomerChange,
    StoredEvent,
    on_change,
    on_events,
    on_export,
    on_removal,
)
from regulars.customers.ingest import PreparedBatch, ingest, prepare, store
from regulars.customers.privacy import erase, export
from regulars.customers.profiles import merge, resolve_id, set_consents, update_traits
from regulars.customers.reads import (
    Recipient,
    change_consents,
    consent_statuses,
    facts_of,
    find_by_identity,
    find_by_phone,
    find_customer,
    get_customer,
    get_customers,
    list_consents,
    list_customers,
    list_events,
    recent_events,
    recipients,
    time_zones,
    update_profile,
)
from regulars.customers.rfm import refresh_rfm, rfm_score_changes, write_rfm_scores
from regulars.customers.search import classify, search
from regulars.customers.timeline import SystemEvent, record_system_events

__all__ = [
    "CustomerChange",
    "PreparedBatch",
    "Recipient",
    "StoredEvent",
    "SystemEvent",
    "change_consents",
    "classify",
    "consent_statuses",
    "erase",
    "export",
    "facts_of",
    "find_by_identity",
    "find_by_phone",
    "find_customer",
    "get_customer",
    "get_customers",
    "ingest",
    "list_consents",
    "list_customers",
    "list_events",
    "merge",
    "on_change",
    "on_events",
    "on_export",
    "on_removal",
    "prepare",
    "recent_events",
    "recipients",
    "record_system_events",
    "refresh_rfm",
    "resolve_id",
    "rfm_score_changes",
    "search",
    "set_consents",
    "store",
    "time_zones",
    "update_profile",
    "update_traits",
    "write_rfm_scores",
]
