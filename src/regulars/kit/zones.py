"""IANA time zones by name, with the fallback every domain uses for a missing or unknown one."""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC_ZONE = ZoneInfo("UTC")


@lru_cache(maxsize=1024)
def zone_or_utc(name: str | None) -> ZoneInfo:
    """The zone named, or UTC when the name is empty or unknown."""
    if not name:
        return UTC_ZONE
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, like "America"
        return UTC_ZONE


def valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True
