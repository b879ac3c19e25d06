"""Delivery policies: may this message go to this customer on this channel now?

Pure rules over plain values, no database: the service gathers the facts into a `PolicyInput`
and calls `decide`. The policies run in this order and the first refusal wins:

1. expiry        now >= expires_at                                   refuse "expired"
2. suppression   the address is suppressed (every category)          refuse "suppressed:<why>"
3. consent       marketing only: channel consent, topic consent      refuse "no_consent",
                 and the preference-centre pause                     "unsubscribed",
                                                                     "topic_unsubscribed", "paused"
4. reachability  the channel has an address                          refuse "unreachable"
5. caps          marketing only: frequency caps                      refuse "frequency_cap"
6. quiet hours   inside the customer's quiet hours                   defer "quiet_hours" (or refuse
                                                                     "expired_in_quiet_hours")
7. otherwise send.

Transactional messages (an order confirmation) are sent regardless of marketing consent, a
pause or frequency caps, but never to a suppressed address. In-app and webhook messages reach
the customer by id inside the business's own surfaces: they need no consent and no address.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from regulars.customers.models import ConsentStatus
from regulars.messages.models import Category, MessageChannel

# The business's own surfaces: reached by customer id, no consent or address needed.
OWN_CHANNELS = frozenset({MessageChannel.INAPP, MessageChannel.WEBHOOK})
ADDRESS_NAMES = {
    MessageChannel.EMAIL: "email address",
    MessageChannel.SMS: "phone number",
    MessageChannel.WHATSAPP: "phone number",
    MessageChannel.PUSH: "push subscription",
}
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class VerdictKind(StrEnum):
    SEND = "send"
    DEFER = "defer"
    REFUSE = "refuse"


class Reason(StrEnum):
    """Machine reason codes of refusals and deferrals (suppressions add ":<why>")."""

    EXPIRED = "expired"
    SUPPRESSED = "suppressed"
    NO_CONSENT = "no_consent"
    UNSUBSCRIBED = "unsubscribed"
    TOPIC_UNSUBSCRIBED = "topic_unsubscribed"
    PAUSED = "paused"
    UNREACHABLE = "unreachable"
    FREQUENCY_CAP = "frequency_cap"
    QUIET_HOURS = "quiet_hours"
    EXPIRED_IN_QUIET_HOURS = "expired_in_quiet_hours"


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: VerdictKind
    reason: str | None = None  # a Reason, or "suppressed:<why>"
    message: str | None = None  # for people: the dashboard and the delivery's `reason`
    at: datetime | None = None  # DEFER only: when to try again (UTC)


SEND = Verdict(VerdictKind.SEND)


def _refuse(reason: str, message: str) -> Verdict:
    return Verdict(VerdictKind.REFUSE, reason, message)


# --- frequency caps ---

UNITS = {
    "m": ("minute", timedelta(minutes=1)),
    "h": ("hour", timedelta(hours=1)),
    "d": ("day", timedelta(days=1)),
    "w": ("week", timedelta(weeks=1)),
}
MAX_CAP_WINDOW = timedelta(days=366)
CAP_PATTERN = re.compile(r"(?P<scope>[a-z]+):(?P<limit>[0-9]+)/(?P<amount>[0-9]+)(?P<unit>[mhdw])")


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `limit` marketing messages per `window`, on `channel` (None: all channels)."""

    channel: MessageChannel | None
    limit: int
    amount: int
    unit: str  # a key of UNITS

    @property
    def window(self) -> timedelta:
        return self.amount * UNITS[self.unit][1]

    @property
    def text(self) -> str:
        return f"{self.channel or 'all'}:{self.limit}/{self.amount}{self.unit}"

    def describe_window(self) -> str:
        name = UNITS[self.unit][0]
        return name if self.amount == 1 else f"{self.amount} {name}s"


def parse_caps(texts: Iterable[str]) -> list[Cap]:
    """ "email:3/7d", "sms:2/24h", "all:6/7d": CHANNEL-or-all:COUNT/WINDOW, units m h d w
    (lower case, so a month is never read as minutes). Raises ValueError naming the text."""
    return [_parse_cap(text) for text in texts]


def _parse_cap(text: str) -> Cap:
    match = CAP_PATTERN.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"frequency cap {text!r} is not CHANNEL:COUNT/WINDOW like 'email:3/7d' "
            "(window units m, h, d, w)"
        )
    scope, unit = match["scope"], match["unit"]
    limit, amount = int(match["limit"]), int(match["amount"])
    channels = {c.value for c in MessageChannel}
    if scope != "all" and scope not in channels:
        allowed = ", ".join(sorted(channels))
        raise ValueError(f"frequency cap {text!r}: {scope!r} is not 'all' or one of {allowed}")
    if limit < 1:
        raise ValueError(f"frequency cap {text!r}: the count must be at least 1")
    if not 1 <= amount <= MAX_CAP_WINDOW // UNITS[unit][1]:
        raise ValueError(f"frequency cap {text!r}: the window must be 1 minute to 366 days")
    channel = None if scope == "all" else MessageChannel(scope)
    return Cap(channel=channel, limit=limit, amount=amount, unit=unit)


def longest_window(caps: Iterable[Cap]) -> timedelta:
    """How far back the service must look for `recent_marketing` (zero without caps)."""
    return max((cap.window for cap in caps), default=timedelta(0))


# --- the facts ---


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local [start, end): may cross midnight (21:00-08:00); start == end means none."""

    start: time
    end: time
    channels: frozenset[MessageChannel]
    transactional: bool  # quiet hours hold transactional messages too


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyInput:
    """Everything the policies look at. Datetimes are timezone-aware UTC."""

    category: Category
    channel: MessageChannel
    topic: str  # "" when the message has no topic
    now: datetime
    expires_at: datetime | None
    timezone: str | None  # the customer's IANA zone; None or invalid: default_timezone
    consents: Mapping[tuple[str, str], str]  # (channel, topic) -> ConsentStatus
    suppressed_reason: str | None  # why the address is suppressed; None if it is not
    address: str | None
    paused_until: datetime | None
    # The customer's marketing deliveries that count (the service picks the statuses), at
    # least those within longest_window(caps), never the message being decided.
    recent_marketing: Sequence[tuple[MessageChannel, datetime]]
    caps: Sequence[Cap]
    quiet: QuietHours
    default_timezone: str


# --- the policies, in order ---


def check_expiry(facts: PolicyInput) -> Verdict | None:
    if facts.expires_at is not None and facts.now >= facts.expires_at:
        return _refuse(Reason.EXPIRED, f"expired at {_utc(facts.expires_at)}")
    return None


def check_suppression(facts: PolicyInput) -> Verdict | None:
    why = facts.suppressed_reason
    if why is None:
        return None
    return _refuse(
        f"{Reason.SUPPRESSED}:{why}", f"the {facts.channel} address is suppressed ({why})"
    )


def check_consent(facts: PolicyInput) -> Verdict | None:
    """Marketing needs the channel's own consent "subscribed" (a topic's consent never stands
    in for it) and, for a topic, the topic not "unsubscribed" (a topic never set follows the
    channel); a pause holds marketing on every channel."""
    if facts.category != Category.MARKETING:
        return None
    channel = facts.channel
    if channel not in OWN_CHANNELS:
        status = facts.consents.get((channel, ""), ConsentStatus.UNKNOWN)
        if status == ConsentStatus.UNSUBSCRIBED:
            return _refuse(
                Reason.UNSUBSCRIBED, f"the customer unsubscribed from {channel} marketing"
            )
        if status != ConsentStatus.SUBSCRIBED:
            return _refuse(
                Reason.NO_CONSENT, f"the customer has not subscribed to {channel} marketing"
            )
        topic = facts.topic
        if topic and facts.consents.get((channel, topic)) == ConsentStatus.UNSUBSCRIBED:
            return _refuse(
                Reason.TOPIC_UNSUBSCRIBED,
                f"the customer unsubscribed from {channel} messages about {topic!r}",
            )
    if facts.paused_until is not None and facts.now < facts.paused_until:
        return _refuse(Reason.PAUSED, f"marketing paused until {_utc(facts.paused_until)}")
    return None


def check_reachability(facts: PolicyInput) -> Verdict | None:
    if facts.channel in OWN_CHANNELS or facts.address:
        return None
    name = ADDRESS_NAMES.get(facts.channel, "address")
    return _refuse(Reason.UNREACHABLE, f"the customer has no {name}")


def check_caps(facts: PolicyInput) -> Verdict | None:
    """A cap refuses when `limit` or more counted messages were made within its window,
    i.e. created strictly after now - window: one exactly a window old no longer counts."""
    if facts.category != Category.MARKETING:
        return None
    for cap in facts.caps:
        if cap.channel is not None and cap.channel != facts.channel:
            continue
        since = facts.now - cap.window
        count = sum(
            1
            for channel, created_at in facts.recent_marketing
            if created_at > since and (cap.channel is None or channel == cap.channel)
        )
        if count >= cap.limit:
            what = f"{cap.channel} messages" if cap.channel else "messages on all channels"
            return _refuse(
                Reason.FREQUENCY_CAP,
                f"{count} {what} in the last {cap.describe_window()} (cap {cap.text})",
            )
    return None


def check_quiet_hours(facts: PolicyInput) -> Verdict | None:
    quiet = facts.quiet
    if facts.channel not in quiet.channels:
        return None
    if facts.category == Category.TRANSACTIONAL and not quiet.transactional:
        return None
    zone = resolve_zone(facts.timezone, default=facts.default_timezone)
    at = next_allowed_moment(facts.now, zone, start=quiet.start, end=quiet.end)
    if at is None:
        return None
    hours = f"quiet hours {quiet.start:%H:%M}-{quiet.end:%H:%M} in {zone.key}"
    local = f"{at.astimezone(zone):%Y-%m-%d %H:%M %Z}"
    if facts.expires_at is not None and at >= facts.expires_at:
        return _refuse(
            Reason.EXPIRED_IN_QUIET_HOURS,
            f"{hours} end at {local}, after the message expires at {_utc(facts.expires_at)}",
        )
    return Verdict(VerdictKind.DEFER, Reason.QUIET_HOURS, f"{hours}: deferred to {local}", at)


POLICIES: tuple[Callable[[PolicyInput], Verdict | None], ...] = (
    check_expiry,
    check_suppression,
    check_consent,
    check_reachability,
    check_caps,
    check_quiet_hours,
)


def decide(facts: PolicyInput) -> Verdict:
    """The first policy that refuses (or defers) decides; otherwise send."""
    for policy in POLICIES:
        verdict = policy(facts)
        if verdict is not None:
            return verdict
    return SEND


def choose_channel(
    *,
    preferred: MessageChannel | None,
    order: Sequence[MessageChannel],
    available: Collection[MessageChannel],
    allowed: Callable[[MessageChannel], bool],
) -> MessageChannel | None:
    """Channel "auto": the preferred channel, then `order`, first that is available (a
    template exists for it) and allowed (the policies would not refuse it). Each channel is
    asked about at most once."""
    candidates = [preferred, *order] if preferred is not None else list(order)
    for channel in dict.fromkeys(candidates):
        if channel in available and allowed(channel):
            return channel
    return None


# --- time zones and quiet hours ---


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def resolve_zone(name: str | None, *, default: str) -> ZoneInfo:
    """The customer's zone; a missing or unknown one falls back to `default`, which must be
    valid (ValueError otherwise: that is a configuration error, not a customer's)."""
    if name is not None and name in _zone_names():
        return ZoneInfo(name)
    if default not in _zone_names():
        raise ValueError(f"default time zone {default!r} is not an IANA time zone")
    return ZoneInfo(default)


def next_allowed_moment(
    now_utc: datetime, tz: tzinfo, *, start: time, end: time
) -> datetime | None:
    """The first instant at or after `now_utc` whose local wall time in `tz` is outside the
    quiet window [start, end), or None when `now_utc` is outside it already.

    Usually the next local `end`; when `end` falls in a spring-forward gap, the first instant
    after the gap; when it is ambiguous (fall back), its first occurrence. The wall clock
    decides, so a fall back that jumps from inside the window to before `start` allows sending
    at the jump, and a repeated hour inside the window is quiet again. Assumes, as every real
    zone does, at most one UTC-offset change within any 24 hours."""
    if now_utc.tzinfo is None:
        raise ValueError("now_utc must be timezone-aware")
    at = now_utc.astimezone(UTC)
    if not _is_quiet(at.astimezone(tz).time(), start, end):
        return None
    while True:  # each turn crosses one offset change; real zones have few within a day
        leaves_at = at + _until(at.astimezone(tz).time(), end)
        jump = _first_offset_change(at, leaves_at, tz)
        if jump is None:
            return leaves_at
        if not _is_quiet(jump.astimezone(tz).time(), start, end):
            return jump
        at = jump


def _is_quiet(local: time, start: time, end: time) -> bool:
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def _until(local: time, end: time) -> timedelta:
    """Wall-clock time from `local` to the next `end` (a full day when they are equal)."""
    delta = _since_midnight(end) - _since_midnight(local)
    return delta if delta > timedelta(0) else delta + DAY


def _since_midnight(t: time) -> timedelta:
    return timedelta(hours=t.hour, minutes=t.minute, seconds=t.second, microseconds=t.microsecond)


def _offset(at: datetime, tz: tzinfo) -> timedelta:
    return at.astimezone(tz).utcoffset() or timedelta(0)


def _first_offset_change(after: datetime, until: datetime, tz: tzinfo) -> datetime | None:
    """The first instant in (after, until] where tz's UTC offset differs from its offset at
    `after`; found by bisection over whole seconds, on which zone transitions fall."""
    before = _offset(after, tz)
    if _offset(until, tz) == before:
        return None
    low = (after - EPOCH) // SECOND  # floor: the offset there is still `before`
    high = -((EPOCH - until) // SECOND)  # ceiling: the offset there has changed
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(EPOCH + middle * SECOND, tz) == before:
            low = middle
        else:
            high = middle
    return EPOCH + high * SECOND


def _utc(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
