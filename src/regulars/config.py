"""One typed Settings object; every field is documented in docs/settings.md (a test checks it)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
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
