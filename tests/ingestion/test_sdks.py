"""The official Segment and RudderStack Python SDKs, unchanged, against a real server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

from regulars.customers.models import EventType, IdentityKind
from tests.ingestion.readback import customer_id_of, profile_of


class SdkClient(Protocol):
    """The calls both SDKs' Client classes share (the SDKs ship without type hints)."""

    def identify(self, user_id: str, traits: dict[str, object]) -> object: ...
    def page(
        self, user_id: str, category: str, name: str, properties: dict[str, object]
    ) -> object: ...
    def group(self, user_id: str, group_id: str, traits: dict[str, object]) -> object: ...
    def alias(self, previous_id: str, user_id: str) -> object: ...
    def track(
        self,
        user_id: str | None = None,
        event: str | None = None,
        properties: dict[str, object] | None = None,
        *,
        anonymous_id: str | None = None,
        message_id: str | None = None,
    ) -> object: ...


MakeClient = Callable[[str, str], SdkClient]


def segment_client(write_key: str, url: str) -> SdkClient:
    client: SdkClient = SegmentClient(write_key, host=url, sync_mode=True, max_retries=0)
    return client


def segment_gzip_client(write_key: str, url: str) -> SdkClient:
    client: SdkClient = SegmentClient(write_key, host=url, sync_mode=True, max_retries=0, gzip=True)
    return client


def rudder_client(write_key: str, url: str) -> SdkClient:
    # RudderStack's client gzips by default.
    client: SdkClient = RudderClient(write_key, host=url, sync_mode=True, max_retries=0)
    return client


SDKS = pytest.mark.parametrize(
    "make_client",
    [segment_client, segment_gzip_client, rudder_client],
    ids=["segment", "segment-gzip", "rudderstack"],
)


@SDKS
def test_sdk_calls_build_profile_and_timeline(
    server_url: str, write_key: str, make_client: MakeClient
) -> None:
    sdk = make_client(write_key, server_url)

    sdk.track(anonymous_id="anon-7", event="Product Viewed", properties={"sku": "TEA-1"})
    sdk.identify("u-42", {"email": "grace@Example.COM", "firstName": "Grace", "plan": "pro"})
    sdk.page("u-42", "Shop", "Basket", {"path": "/basket"})
    sdk.track("u-42", "Order Completed", {"order_id": "o-1", "revenue": 42.5})
    sdk.group("u-42", "acme", {"name": "Acme Ltd"})
    sdk.alias("anon-7", "u-42")

    profile = profile_of("u-42")
    assert profile.customer.email == "grace@example.com"
    assert profile.customer.first_name == "Grace"
    assert profile.customer.traits["plan"] == "pro"
    assert profile.group_keys == ["acme"]
    assert profile.facts.orders_count == 1
    assert profile.facts.revenue_total_cents == 4250
    assert customer_id_of(IdentityKind.ANONYMOUS_ID, "anon-7") == profile.customer.id
    assert sorted(event.type for event in profile.events) == sorted(
        [
            EventType.TRACK,
            EventType.IDENTIFY,
            EventType.PAGE,
            EventType.TRACK,
            EventType.GROUP,
            EventType.ALIAS,
        ]
    )
    order = next(event for event in profile.events if event.name == "Order Completed")
    assert order.properties == {"order_id": "o-1", "revenue": 42.5}


@SDKS
def test_sdk_retry_of_the_same_message_is_stored_once(
    server_url: str, write_key: str, make_client: MakeClient
) -> None:
    sdk = make_client(write_key, server_url)

    for _ in range(3):
        sdk.track("u-1", "Product Viewed", {"sku": "A"}, message_id="retry-1")

    profile = profile_of("u-1")
    assert [event.message_id for event in profile.events] == ["retry-1"]
    assert profile.facts.events_count == 1


def test_segment_sdk_with_a_wrong_write_key_gets_401(server_url: str, write_key: str) -> None:
    sdk = segment_client("wk_wrong", server_url)

    with pytest.raises(Exception, match="401") as raised:
        sdk.track("u-1", "Product Viewed")

    assert getattr(raised.value, "status", None) == 401
