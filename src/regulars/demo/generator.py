"""The demo store, Lantern Coffee Roasters, as a stream of Segment messages. Pure: no database.

`generate(seed, customers=..., months=..., now=...)` yields the same messages for the same
arguments: every random choice comes from `random.Random` seeded from `seed`, and every
timestamp is an offset from `now`. Each customer's messages come out together, in time order.
"""

from __future__ import annotations

import random
import unicodedata
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers

Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Market:
    region: str
    locale: str
    weight: int
    timezones: tuple[str, ...]
    email_domains: tuple[str, ...]
    phone_prefixes: tuple[str, ...]  # national significant number prefixes of mobiles
    phone_length: int  # digits of the national significant number
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    category: str
    price_cents: int


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


MARKETS = (
    Market("US", "en-US", 34,
           ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"),
           ("gmail.com", "yahoo.com", "outlook.com", "icloud.com"),
           # 555-01xx is reserved for fiction: nobody real gets a demo text
           tuple(f"{a}55501" for a in _words("201 212 312 415 617 206 303 512 305 404 503 718")),
           10,
           _words("James Mary Robert Patricia Michael Jennifer David Linda Emily Daniel "
                  "Olivia Ethan Ava Noah Sophia Liam Madison Tyler Grace Jordan"),
           _words("Smith Johnson Williams Brown Jones Garcia Miller Davis Wilson Anderson "
                  "Taylor Thomas Moore Jackson Martin Lee Thompson White Harris Clark")),
    Market("GB", "en-GB", 15, ("Europe/London",),
           ("gmail.com", "btinternet.com", "outlook.com", "hotmail.co.uk"), ("74", "75", "78"), 10,
           _words("Oliver Amelia George Isla Harry Ava Jack Poppy Charlie Freya Alfie Evie "
                  "Thomas Sophie William Ella"),
           _words("Smith Jones Taylor Brown Williams Wilson Evans Thomas Roberts Walker "
                  "Wright Hughes Edwards Green Hall Wood")),
    Market("DE", "de-DE", 15, ("Europe/Berlin",),
           ("web.de", "gmx.de", "t-online.de", "gmail.com"), ("151", "160", "170", "176"), 11,
           _words("Lukas Anna Jörg Lea Maximilian Sophie Jürgen Marie Felix Hannah Björn "
                  "Lena Tobias Katharina Stefan Mia"),
           _words("Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann "
                  "Schäfer Koch Bauer Richter Klein Weiß")),
    Market("FR", "fr-FR", 10, ("Europe/Paris",),
           ("orange.fr", "free.fr", "laposte.net", "gmail.com"), ("6",), 9,
           _words("Léa Hugo Chloé Louis Manon Gabriel Camille Raphaël Inès Jules Zoé Théo "
                  "Élodie Mathis Océane Noël"),
           _words("Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau "
                  "Simon Laurent Lefèvre Michel Garnier Rousseau")),
    Market("ES", "es-ES", 7, ("Europe/Madrid",),
           ("gmail.com", "hotmail.es", "telefonica.net", "yahoo.es"), ("6",), 9,
           _words("Lucía Hugo Martina Martín Sofía Pablo María Álvaro Paula Adrián Julia "
                  "Diego"),
           _words("García Rodríguez González Fernández López Martínez Sánchez Pérez Gómez "
                  "Martín Jiménez Ruiz")),
    Market("MX", "es-MX", 6, ("America/Mexico_City",),
           ("gmail.com", "hotmail.com", "prodigy.net.mx"), ("55", "33", "81"), 10,
           _words("Santiago Ximena Mateo Valentina Sebastián Regina Leonardo Camila "
                  "Emiliano Renata"),
           _words("Hernández García Martínez López González Pérez Rodríguez Sánchez "
                  "Ramírez Cruz")),
    Market("JP", "ja-JP", 6, ("Asia/Tokyo",),
           ("gmail.com", "docomo.ne.jp", "yahoo.co.jp"), ("90", "80", "70"), 10,
           _words("翔太|shota 陽菜|hina 蓮|ren 結衣|yui 大翔|hiroto 美咲|misaki 悠真|yuma "
                  "さくら|sakura"),
           _words("佐藤|sato 鈴木|suzuki 高橋|takahashi 田中|tanaka 伊藤|ito 渡辺|watanabe "
                  "山本|yamamoto 中村|nakamura")),
    Market("AU", "en-AU", 7, ("Australia/Sydney", "Australia/Perth"),
           ("gmail.com", "bigpond.com", "outlook.com"), ("4",), 9,
           _words("Charlotte Oliver Mia Noah Isla Jack Matilda William Ruby Lachlan"),
           _words("Smith Jones Williams Brown Wilson Taylor Nguyen Johnson Martin White")),
)  # fmt: skip

PRODUCTS = (
    Product("BN-ETH-250", "Ethiopia Yirgacheffe, 250 g", "beans", 1650),
    Product("BN-COL-250", "Colombia Huila, 250 g", "beans", 1400),
    Product("BN-KEN-250", "Kenya Nyeri AA, 250 g", "beans", 1850),
    Product("BN-GUA-250", "Guatemala Antigua, 250 g", "beans", 1550),
    Product("BN-DEC-250", "Decaf Swiss Water, 250 g", "beans", 1500),
    Product("BN-BRA-1K", "Brazil Cerrado, 1 kg", "beans", 3900),
    Product("BN-ESP-1K", "House Espresso Blend, 1 kg", "beans", 3600),
    Product("BN-SAMPLER", "Single-origin sampler, 4 x 100 g", "beans", 2400),
    Product("GR-V60", "Ceramic V60 dripper", "gear", 2400),
    Product("GR-FILTERS", "Paper filters, 100", "gear", 750),
    Product("GR-GRINDER", "Conical burr grinder", "gear", 14900),
    Product("GR-KETTLE", "Gooseneck kettle", "gear", 6900),
    Product("GR-AERO", "AeroPress", "gear", 3995),
    Product("GR-SCALE", "Brew scale", "gear", 2900),
    Product("SUB-MONTHLY", "Monthly beans subscription", "subscription", 2200),
    Product("SUB-ESPRESSO", "Espresso subscription", "subscription", 2800),
)


STORE = "Lantern Coffee Roasters"
CURRENCY = "USD"
FREE_SHIPPING_CENTS = 5000
SHIPPING_CENTS = 590
DAYS_PER_MONTH = 30.44
PAGES = (("Home", "/"), ("Shop", "/shop"), ("Brew guides", "/guides"), ("Our farms", "/farms"))
# persona: (weight, sessions per day, P(buy), P(abandon after adding))
PERSONAS = {
    "browser": (30, 0.02, 0.0, 0.35),
    "occasional": (30, 0.03, 0.3, 0.25),
    "regular": (25, 0.06, 0.5, 0.2),
    "subscriber": (15, 0.04, 0.2, 0.1),
}


def generate(
    seed: int, *, customers: int = 2000, months: int = 12, now: datetime
) -> Iterator[Message]:
    """Messages for `customers` known customers plus `customers // 5` anonymous visitors."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    window = timedelta(days=months * DAYS_PER_MONTH)
    taken: set[str] = set()
    for index in range(customers + customers // 5):
        rng = random.Random(f"{seed}/{index}")
        person = _Person(rng, index=index, now=now, start=now - window)
        if index < customers:
            person.live_as_customer(taken)
        else:
            person.live_as_visitor()
        yield from sorted(person.messages, key=lambda m: str(m["timestamp"]))


@dataclass
class _Person:
    rng: random.Random
    index: int
    now: datetime
    start: datetime
    market: Market = field(init=False)
    context: dict[str, Any] = field(init=False)
    anonymous_id: str = field(init=False)
    user_id: str | None = None
    orders: int = 0
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.market = self.rng.choices(MARKETS, weights=[m.weight for m in MARKETS])[0]
        timezone = self.rng.choice(self.market.timezones)
        self.context = {"locale": self.market.locale, "timezone": timezone}
        self.anonymous_id = self._uuid()

    def live_as_customer(self, taken: set[str]) -> None:
        span = (self.now - self.start).total_seconds()
        joined_at = self.start + timedelta(seconds=self.rng.uniform(0.02, 0.92) * span)
        persona = self.rng.choices(list(PERSONAS), weights=[p[0] for p in PERSONAS.values()])[0]
        _, rate, p_buy, p_abandon = PERSONAS[persona]
        at = joined_at
        if self.rng.random() < 0.55:  # browsed anonymously first
            for _ in range(self.rng.randint(1, 3)):
                moment = joined_at - timedelta(days=self.rng.uniform(0.5, 30))
                self._session(max(moment, self.start), p_buy=0.0, p_abandon=p_abandon)
            if self.rng.random() < 0.3:  # guest checkout, then creates an account
                at = self._session(joined_at, p_buy=1.0, p_abandon=0.0) + timedelta(seconds=40)
        self.user_id = f"lc_{self.index:06d}"
        self._identify(at, self._traits(taken))
        if persona == "subscriber":
            self._subscribe(at + timedelta(minutes=5))
        self._sessions(at + timedelta(hours=2), rate=rate, p_buy=p_buy, p_abandon=p_abandon)
        if self.rng.random() < 0.12:
            self._change_consent()

    def live_as_visitor(self) -> None:
        span = (self.now - self.start).total_seconds()
        for _ in range(self.rng.randint(1, 3)):
            moment = self.start + timedelta(seconds=self.rng.uniform(0.0, 0.98) * span)
            self._session(moment, p_buy=0.0, p_abandon=0.5)

    # -- identity and profile ------------------------------------------------------------

    def _traits(self, taken: set[str]) -> dict[str, Any]:
        first, first_ascii = _split_name(self.rng.choice(self.market.first_names))
        last, last_ascii = _split_name(self.rng.choice(self.market.last_names))
        traits: dict[str, Any] = {
            "email": _unique_email(self.rng, first_ascii, last_ascii, self.market, taken),
            "firstName": first,
            "lastName": last,
            "favouriteRoast": self.rng.choice(("light", "medium", "dark", "espresso")),
            "brewMethod": self.rng.choice(("filter", "espresso", "french press", "aeropress")),
            "consents": self._consents(has_phone=False),
        }
        traits["city"] = _city(self.context["timezone"], traits["email"])
        if self.rng.random() < 0.7:
            traits["phone"] = _unique_phone(self.rng, self.market, taken)
            traits["consents"] = self._consents(has_phone=True)
        return traits

    def _consents(self, *, has_phone: bool) -> dict[str, str]:
        consents: dict[str, str] = {}
        roll = self.rng.random()
        if roll < 0.65:
            consents["email"] = "subscribed"
        elif roll < 0.85:
            consents["email"] = "unsubscribed"
        if consents.get("email") == "subscribed" and self.rng.random() < 0.6:
            consents["email:newsletter"] = "subscribed"
        if has_phone and self.rng.random() < 0.5:
            consents["sms"] = self.rng.choice(("subscribed", "subscribed", "unsubscribed"))
        return consents

    def _identify(self, at: datetime, traits: dict[str, Any]) -> None:
        self._emit("identify", at, traits=traits)

    def _change_consent(self) -> None:
        last = max(str(m["timestamp"]) for m in self.messages)
        at = datetime.fromisoformat(last) + timedelta(days=self.rng.uniform(1, 20))
        if at < self.now:
            consents = {"email:newsletter": "unsubscribed", "sms": "unsubscribed"}
            self._identify(at, {"consents": consents})

    # -- behaviour -------------------------------------------------------------------------

    def _sessions(self, since: datetime, *, rate: float, p_buy: float, p_abandon: float) -> None:
        at = since + timedelta(days=self.rng.expovariate(rate))
        while at < self.now - timedelta(hours=2):
            self._session(at, p_buy=p_buy, p_abandon=p_abandon)
            at += timedelta(days=self.rng.expovariate(rate))

    def _session(self, at: datetime, *, p_buy: float, p_abandon: float) -> datetime:
        """One visit; returns when it ended."""
        for name, path in self.rng.sample(PAGES, self.rng.randint(1, 3)):
            at = self._emit("page", at, name=name, properties={"path": path, "title": name})
        viewed = self.rng.sample(PRODUCTS, self.rng.randint(1, 3))
        for product in viewed:
            at = self._emit("track", at, event="Product Viewed", properties=_item(product))
        buys = self.rng.random() < p_buy
        if not buys and self.rng.random() >= p_abandon:
            return at
        cart = [(p, self.rng.choice((1, 1, 1, 2))) for p in viewed[: self.rng.randint(1, 2)]]
        for product, quantity in cart:
            added = _item(product) | {"quantity": quantity}
            at = self._emit("track", at, event="Product Added", properties=added)
        if buys or self.rng.random() < 0.5:
            at = self._emit("track", at, event="Checkout Started", properties=_order(cart))
        return self._order(at, cart) if buys else at

    def _order(
        self, at: datetime, cart: list[tuple[Product, int]], *, server: bool = False
    ) -> datetime:
        self.orders += 1
        order_id = f"LC{self.index:06d}-{self.orders:03d}"
        properties = _order(cart) | {"order_id": order_id}
        at = self._emit("track", at, event="Order Completed", properties=properties, server=server)
        refund_at = at + timedelta(days=self.rng.uniform(3, 20))
        if self.rng.random() < 0.06 and refund_at < self.now:
            product, quantity = cart[0]
            amount = product.price_cents * quantity / 100
            refund = {"order_id": order_id, "revenue": amount, "total": amount,
                      "currency": CURRENCY, "products": [_line(product, quantity)]}  # fmt: skip
            self._emit("track", refund_at, event="Order Refunded", properties=refund)
        return at

    def _subscribe(self, at: datetime) -> None:
        plan = self.rng.choice([p for p in PRODUCTS if p.category == "subscription"])
        self._order(self._emit("page", at, name="Subscriptions", properties={}), [(plan, 1)])
        renew_at = at + timedelta(days=30)
        while renew_at < self.now and self.rng.random() > 0.05:  # 5% cancel each month
            self._order(renew_at, [(plan, 1)], server=True)  # charged by the shop, no browser
            renew_at += timedelta(days=30)

    def _emit(self, kind: str, at: datetime, *, server: bool = False, **fields: Any) -> datetime:
        """Append one message at `at`; returns a moment a few seconds to minutes later.

        No `sentAt`: that is history, and `ingest` would shift a sent-long-ago message to now
        (Segment's clock-skew correction)."""
        message: Message = {"type": kind, "messageId": self._uuid(), **fields}
        if not server:
            message["anonymousId"] = self.anonymous_id
        if self.user_id is not None:
            message["userId"] = self.user_id
        message["timestamp"] = _iso(at)
        message["context"] = dict(self.context)
        self.messages.append(message)
        return at + timedelta(seconds=self.rng.randint(8, 150))

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))


def _item(product: Product) -> dict[str, Any]:
    return {
        "product_id": product.sku,
        "sku": product.sku,
        "name": product.name,
        "category": product.category,
        "price": product.price_cents / 100,
        "currency": CURRENCY,
    }


def _line(product: Product, quantity: int) -> dict[str, Any]:
    return {"product_id": product.sku, "sku": product.sku, "name": product.name,
            "price": product.price_cents / 100, "quantity": quantity}  # fmt: skip


def _order(cart: list[tuple[Product, int]]) -> dict[str, Any]:
    revenue = sum(product.price_cents * quantity for product, quantity in cart)
    shipping = 0 if revenue >= FREE_SHIPPING_CENTS else SHIPPING_CENTS
    return {
        "revenue": revenue / 100,
        "shipping": shipping / 100,
        "total": (revenue + shipping) / 100,
        "currency": CURRENCY,
        "products": [_line(product, quantity) for product, quantity in cart],
    }


CITIES = {
    "America/New_York": ("New York", "Boston", "Philadelphia"),
    "America/Chicago": ("Chicago", "Austin", "Minneapolis"),
    "America/Denver": ("Denver", "Salt Lake City"),
    "America/Los_Angeles": ("Los Angeles", "San Francisco", "Seattle", "Portland"),
    "Europe/London": ("London", "Manchester", "Bristol", "Edinburgh"),
    "Europe/Berlin": ("Berlin", "Hamburg", "Munich", "Cologne"),
    "Europe/Paris": ("Paris", "Lyon", "Marseille"),
    "Europe/Madrid": ("Madrid", "Barcelona", "Valencia"),
    "America/Mexico_City": ("Mexico City", "Guadalajara", "Monterrey"),
    "Asia/Tokyo": ("Tokyo", "Osaka", "Kyoto"),
    "Australia/Sydney": ("Sydney", "Melbourne", "Brisbane"),
    "Australia/Perth": ("Perth",),
}


def _city(timezone: str, email: str) -> str:
    """A city in the customer's zone, picked from the email (not the random stream, so the
    rest of the store stays the same for a seed)."""
    cities = CITIES[timezone]
    return cities[zlib.crc32(email.encode()) % len(cities)]


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _split_name(entry: str) -> tuple[str, str]:
    """`"Jörg"` → ("Jörg", "jorg"); `"佐藤|sato"` → ("佐藤", "sato")."""
    display, _, ascii_form = entry.partition("|")
    if not ascii_form:
        folded = display.replace("ß", "ss")
        ascii_form = unicodedata.normalize("NFKD", folded).encode("ascii", "ignore").decode()
    return display, ascii_form.lower().replace(" ", "").replace("'", "")


def _unique_email(
    rng: random.Random, first: str, last: str, market: Market, taken: set[str]
) -> str:
    pattern = rng.choice(("{f}.{l}", "{f}{l}", "{f}_{l}", "{i}{l}"))
    local = pattern.format(f=first, l=last, i=first[:1])
    domain = rng.choice(market.email_domains)
    email, n = f"{local}@{domain}", 1
    while email in taken:
        n += 1
        email = f"{local}{n}@{domain}"
    taken.add(email)
    return email


def _unique_phone(rng: random.Random, market: Market, taken: set[str]) -> str:
    """A valid mobile number of the market's region, in E.164."""
    code = phonenumbers.country_code_for_region(market.region)
    while True:
        prefix = rng.choice(market.phone_prefixes)
        digits = "".join(rng.choice("0123456789") for _ in range(market.phone_length - len(prefix)))
        number = phonenumbers.PhoneNumber(country_code=code, national_number=int(prefix + digits))
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        valid = phonenumbers.is_valid_number_for_region(number, market.region)
        if valid and e164 not in taken:
            taken.add(e164)
            return e164
