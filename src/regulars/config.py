"""One typed Settings object; every field is documented in docs/settings.md (a test checks it)."""

from __future__ import annotations

from datetime import time
from functools import lru_cache
from typing import Literal
from zoneinfo import available_timezones

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TRACKED_EVENTS = (
    "Product Viewed",
    "Product Added",
    "Checkout Started",
    "Order Completed",
    "Order Refunded",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REGULARS_", extra="ignore")

    database_url: str = "sqlite:///regulars.db"
    host: str = "127.0.0.1"
    port: int = 8000
    web_workers: int = Field(default=1, ge=1, le=64)
    # Pages the WAL may grow to before a committing writer folds it back itself (docs/storage.md)
    sqlite_wal_autocheckpoint: int = Field(default=100_000, ge=1000, le=1_000_000)
    default_phone_region: str = "US"
    tracked_events: list[str] = Field(default_factory=lambda: list(DEFAULT_TRACKED_EVENTS))
    embedded_worker: bool | None = None
    worker_batch_size: int = Field(default=50, ge=1, le=1000)
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    job_lease_seconds: int = Field(default=300, ge=5)
    job_max_attempts: int = Field(default=10, ge=1)
    max_event_bytes: int = Field(default=32 * 1024, ge=1024)
    max_batch_bytes: int = Field(default=500 * 1024, ge=1024)
    log_level: str = "INFO"
    # Lifecycle stages (segments/builtin.py) and RFM scores (customers/rfm.py).
    lifecycle_new_days: int = Field(default=30, ge=1, le=3650)
    lifecycle_active_days: int = Field(default=90, ge=1, le=3650)
    lifecycle_at_risk_days: int = Field(default=180, ge=2, le=3650)
    lifecycle_loyal_orders: int = Field(default=3, ge=2, le=10_000)
    rfm_refresh_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    # Messages (docs/messages.md).
    secret_key: str = ""
    public_url: str = "http://127.0.0.1:8000"
    email_from: str = "Regulars <hello@regulars.localhost>"
    unsubscribe_mailto: str = ""
    default_timezone: str = "UTC"
    quiet_hours_start: time = time(21, 0)
    quiet_hours_end: time = time(8, 0)
    quiet_hours_channels: list[str] = Field(default_factory=lambda: ["sms", "whatsapp", "push"])
    quiet_hours_transactional: bool = False
    frequency_caps: list[str] = Field(
        default_factory=lambda: ["email:3/7d", "sms:2/7d", "whatsapp:2/7d", "push:3/1d", "all:6/7d"]
    )
    auto_channel_order: list[str] = Field(
        default_factory=lambda: ["whatsapp", "sms", "email", "push", "inapp"]
    )
    delivery_max_attempts: int = Field(default=8, ge=1, le=50)
    dispatch_batch_size: int = Field(default=200, ge=1, le=5000)
    link_ttl_days: int = Field(default=60, ge=1, le=3650)
    vapid_private_key: str = ""
    vapid_public_key: str = ""
    vapid_subject: str = "mailto:hello@regulars.localhost"
    journey_batch_size: int = Field(default=500, ge=1, le=5000)
    journey_webhook_secret: str = ""
    journey_webhook_timeout: float = Field(default=10.0, gt=0, le=120)
    # Dashboard sign-in (docs/access.md).
    session_idle_hours: int = Field(default=12, ge=1, le=24 * 30)
    session_max_days: int = Field(default=14, ge=1, le=365)
    login_max_failures: int = Field(default=5, ge=1, le=100)
    login_lockout_minutes: int = Field(default=15, ge=1, le=24 * 60)
    login_max_attempts_per_ip: int = Field(default=30, ge=1, le=10_000)
    cookie_secure: Literal["auto", "always", "never"] = "auto"

    @model_validator(mode="after")
    def _lifecycle_in_order(self) -> Settings:
        """New fits inside active, and at risk starts where active ends: the stages partition
        every customer who ordered (docs/segments-builtin.md)."""
        if not self.lifecycle_new_days <= self.lifecycle_active_days < self.lifecycle_at_risk_days:
            raise ValueError(
                "lifecycle days must satisfy new_days <= active_days < at_risk_days, got "
                f"{self.lifecycle_new_days}, {self.lifecycle_active_days}, "
                f"{self.lifecycle_at_risk_days}"
            )
        return self

    @field_validator("frequency_caps")
    @classmethod
    def _caps_parse(cls, value: list[str]) -> list[str]:
        from regulars.messages.policy import parse_caps  # the one parser of the cap syntax

        return [cap.text for cap in parse_caps(value)]

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in available_timezones():
            raise ValueError(f"{value!r} is not an IANA time zone such as 'Europe/Berlin'")
        return value

    @field_validator("quiet_hours_channels", "auto_channel_order")
    @classmethod
    def _known_channels(cls, value: list[str]) -> list[str]:
        known = {"email", "sms", "whatsapp", "push", "inapp", "webhook"}
        unknown = [channel for channel in value if channel not in known]
        if unknown:
            raise ValueError(f"unknown channel(s) {unknown}; known: {sorted(known)}")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def runs_embedded_worker(self) -> bool:
        """The embedded worker runs by default on SQLite; on PostgreSQL only when asked."""
        if self.embedded_worker is None:
            return self.is_sqlite
        return self.embedded_worker


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
