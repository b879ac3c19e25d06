"""The one injectable source of "now". Code asks `clock.now()`; tests and simulations move it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ShiftedClock:
    """The system clock moved by a fixed offset: a process that lives in the future."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class FrozenClock:
    """A clock that stands still until moved; thread-safe so the worker thread can read it."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware datetime")
        self._at = at.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._at

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._at += delta
            return self._at

    def set(self, at: datetime) -> None:
        with self._lock:
            self._at = at.astimezone(UTC)


_current: Clock = SystemClock()


def now() -> datetime:
    return _current.now()


def set_clock(clock: Clock) -> None:
    global _current
    _current = clock


def reset_clock() -> None:
    set_clock(SystemClock())


@contextmanager
def frozen(at: datetime) -> Iterator[FrozenClock]:
    previous = _current
    clock = FrozenClock(at)
    set_clock(clock)
    try:
        yield clock
    finally:
        set_clock(previous)
