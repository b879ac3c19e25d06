"""The messages commands through the real `regulars` entry point, on both databases:
templates, send, broadcasts, deliveries, providers, push keys and suppressions."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from regulars import cli as root
from regulars.db import Database, session_scope
from regulars.kit import clock
from regulars.messages import broadcasts, feedback, tasks, vapid
from regulars.messages.models import MessageChannel
from regulars.segments import service as segments
from regulars.segments.schemas import SegmentCreate
from tests.cli import run_cli
from tests.customers.helpers import ingest, owner_of

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SHIPPED_EN = {
    "subject": "Your order {{ event.order }} is on its way, {{ customer.first_name }}",
    "preheader": "Track it",
    "body": "<p>Hello {{ customer.first_name }}, order {{ event.order }} has shipped.</p>",
    "format": "html",
}
SHIPPED = {"name": "Order shipped", "locales": {"en": SHIPPED_EN}}
NEWSLETTER = {
    "name": "Newsletter",
    "category": "marketing",
    "locales": {
        "en": {
            "subject": "News for {{ customer.first_name }}",
            "body": "<p>New!</p>",
            "format": "html",
        }
    },
}
DELIVERY = re.compile(r"^delivery ([0-9A-Z]{26}): (\w+) \((.*?)\)(?: - (.*))?$")


class Cli:
    """`regulars ARGS` in process: its exit code, stdout and stderr."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
        self.monkeypatch, self.capsys = monkeypatch, capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = run_cli(list(args), self.monkeypatch)
        captured = self.capsys.readouterr()
        # The root error console folds long lines at 80 columns when not on a terminal.
        return code, captured.out, " ".join(captured.err.split())

    def ok(self, *args: str) -> str:
        code, out, err = self(*args)
        assert code == 0, err
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    @staticmethod
    def usage(*args: str) -> tuple[int, str]:
        """A usage error (click's own, exit 2) and its message, words joined by one space.
        Run through click's standalone mode: `main()` lets typer 0.29's errors escape."""
        root._mount()
        result = CliRunner().invoke(root.app, list(args))
        return result.exit_code, " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())


@pytest.fixture
def cli(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    clock.set_clock(clock.FrozenClock(NOON))
    return Cli(monkeypatch, capsys)


@pytest.fixture
def ada(database: Database) -> str:
    traits = {"email": "ada@example.com", "firstName": "Ada", "consents": {"email": "subscribed"}}
    message = {"type": "identify", "userId": "ada-1", "messageId": "a", "traits": traits}
    assert ingest([message]).rejected == []
    customer_id = owner_of("ada-1")
    assert customer_id is not None
    return customer_id


def write(tmp_path: Path, name: str, content: object) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def rows(out: str) -> list[list[str]]:
    """A table's lines split into words, header first."""
    return [line.split() for line in out.strip().splitlines()]


def fields(out: str) -> dict[str, str]:
    """The label-value lines of a `show` (label and value apart by two spaces or more)."""
    pairs = (re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in out.splitlines())
    found: dict[str, str] = {}
    for pair in pairs:
        if len(pair) == 2:
            found.setdefault(pair[0], pair[1])  # the first: a table below may repeat a label
    return found


def delivered_now() -> None:
    """What the worker does: hand the due deliveries to their providers (the sandbox)."""
    tasks.deliver_due("test", clock.now(), 100)


# --- templates ---


def test_templates_save_list_show_and_delete(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "shipped.json", SHIPPED)
    assert cli.ok("templates", "save", "order_shipped", "email", path) == (
        "template order_shipped (email) saved: version 1\n"
    )
    assert cli.ok("templates", "save", "order_shipped", "email", path).endswith("version 2\n")
    sms = write(tmp_path, "sms.json", {"name": "Shipped", "locales": {"en": {"body": "Sent!"}}})
    cli.ok("templates", "save", "order_shipped", "sms", sms)

    assert rows(cli.ok("templates", "list")) == [
        ["key", "channel", "name", "category", "topic", "version", "locales"],
        ["order_shipped", "email", "Order", "shipped", "transactional", "-", "2", "en"],
        ["order_shipped", "sms", "Shipped", "transactional", "-", "1", "en"],
    ]
    shown = json.loads(cli.ok("templates", "show", "order_shipped", "--channel", "email"))
    assert (shown["key"], shown["channel"], shown["version"]) == ("order_shipped", "email", 2)
    assert shown["locales"]["en"] == SHIPPED_EN

    code, _, err = cli("templates", "show", "order_shipped")
    assert (code, err) == (
        2,
        "error: template 'order_shipped' has email, sms content: pick one with --channel",
    )

    assert cli.ok("templates", "delete", "order_shipped", "sms") == (
        "template order_shipped (sms) deleted\n"
    )
    assert json.loads(cli.ok("templates", "show", "order_shipped"))["channel"] == "email"
    assert cli("templates", "delete", "order_shipped", "sms")[::2] == (
        1,
        "error: no sms template 'order_shipped'",
    )
    assert [t["channel"] for t in cli.json("templates", "list")] == ["email"]


def test_a_liquid_syntax_error_is_refused_with_its_place_and_exit_2(
    cli: Cli, tmp_path: Path
) -> None:
    broken = {
        "name": "Broken",
        "locales": {
            "de": {"subject": "Hallo", "body": "<p>Hallo</p>", "format": "html"},
            "en": {"subject": "Hi", "body": "<p>Hi</p>\n<p>{% if %}yes{% endif %}</p>"},
        },
    }
    path = write(tmp_path, "broken.json", broken)
    code, out, err = cli("templates", "save", "broken", "email", path)
    assert code == 2 and out == ""
    assert err == (
        "error: template has 1 problem(s); first: en.body line 2, column 7: missing expression"
    )
    assert cli.json("templates", "list") == []


def test_a_template_file_that_is_not_a_template_exits_2_with_the_problem(
    cli: Cli, tmp_path: Path
) -> None:
    cases = {
        '{"name": "x",\n': "is not JSON: unexpected end of data: line 2 column 1",
        "[1, 2]": "must be a JSON object",
        '{"name": "x"}': "error: locales: Field required",
        '{"name": "x", "locales": {"en": {"subjet": "Hi", "body": "x"}}}': "en.subject",
    }
    for n, (text, problem) in enumerate(cases.items()):
        code, _, err = cli("templates", "save", "t", "email", write(tmp_path, f"{n}.json", text))
        assert code == 2 and problem in err, (text, err)
    code, _, err = cli("templates", "save", "Bad Key", "email", write(tmp_path, "ok.json", SHIPPED))
    assert code == 2 and "template key 'Bad Key': use lower-case letters" in err
    code, _, err = cli("templates", "save", "t", "email", str(tmp_path / "missing.json"))
    assert code == 2 and "missing.json: No such file or directory" in err


def test_preview_prints_the_verdict_and_the_rendered_email(
    cli: Cli, ada: str, tmp_path: Path
) -> None:
    cli.ok("templates", "save", "order_shipped", "email", write(tmp_path, "t.json", SHIPPED))
    out = cli.ok("templates", "preview", "order_shipped", "ada-1", "--event", '{"order": "A-17"}')
    assert out == (
        "template order_shipped version 1, email, locale en\n"
        "verdict: send\n"
        "subject: Your order A-17 is on its way, Ada\n"
        "preheader: Track it\n"
        "\n"
        "Hello Ada, order A-17 has shipped.\n"
    )
    html = cli.ok(
        "templates", "preview", "order_shipped", ada, "--event", '{"order": "A-17"}', "--html"
    )
    assert "<p>Hello Ada, order A-17 has shipped.</p>" in html
    assert "subject: Your order A-17 is on its way, Ada" in html

    assert cli("templates", "preview", "order_shipped", ada, "--channel", "sms")[::2] == (
        1,
        "error: template 'order_shipped' has no sms content",
    )
    previewed = cli.json("templates", "preview", "order_shipped", ada, "--event", '{"order": 1}')
    assert previewed["verdict"]["decision"] == "send"
    assert previewed["content"]["subject"] == "Your order 1 is on its way, Ada"


def test_preview_errors(cli: Cli, ada: str, tmp_path: Path) -> None:
    cli.ok("templates", "save", "order_shipped", "email", write(tmp_path, "t.json", SHIPPED))
    code, out, err = cli("templates", "preview", "order_shipped", "ada-1")  # no event.order
    assert code == 1 and out.splitlines()[1] == "verdict: send"
    assert err.startswith("render failed: ") and "order" in err
    assert cli("templates", "preview", "nope", "ada-1")[::2] == (1, "error: no template 'nope'")
    assert cli("templates", "preview", "order_shipped", "nobody")[::2] == (
        1,
        "error: no customer 'nobody'",
    )
    assert cli("templates", "preview", "order_shipped", "ada-1", "--event", "{")[0] == 2


# --- send and deliveries ---


def test_send_prints_the_delivery_and_the_same_key_answers_the_same_one(
    cli: Cli, ada: str, tmp_path: Path
) -> None:
    cli.ok("templates", "save", "order_shipped", "email", write(tmp_path, "t.json", SHIPPED))
    args = ("send", "ada-1", "order_shipped", "--event", '{"order": "A-17"}', "--key", "o-17")
    first = DELIVERY.match(cli.ok(*args).strip())
    again = DELIVERY.match(cli.ok(*args).strip())
    assert first and again
    assert first.groups() == (again.group(1), "queued", "email to ada@example.com", None)
    listed = cli.json("deliveries", "list", "--customer", "ada@example.com")
    assert [d["id"] for d in listed] == [first.group(1)]

    refused = DELIVERY.match(
        cli.ok("send", ada, "order_shipped", "--event", '{"order": 1}', "--channel", "sms").strip()
    )
    assert refused and refused.group(2, 3) == ("suppressed", "sms")
    assert str(refused.group(4)).startswith("no_template: ")


def test_send_errors(cli: Cli, ada: str, tmp_path: Path) -> None:
    cli.ok("templates", "save", "order_shipped", "email", write(tmp_path, "t.json", SHIPPED))
    assert cli("send", "ada-1", "nope")[::2] == (1, "error: no template 'nope'")
    assert cli("send", "nobody", "order_shipped")[::2] == (1, "error: no customer 'nobody'")
    code, _, err = cli("send", "ada-1", "order_shipped", "--event", "[1]")
    assert (code, err) == (2, "error: --event must be a JSON object")
    code, _, err = cli("send", "ada-1", "order_shipped", "--expires-in", "0")
    assert (code, err) == (2, "error: --expires-in: Input should be greater than or equal to 1")
    code, message = cli.usage("send", "ada-1", "order_shipped", "--channel", "fax")
    assert code == 2 and "Invalid value for '--channel'" in message and "'fax'" in message
    assert cli.json("deliveries", "list") == []


def test_the_sandbox_outbox_and_one_delivery_with_its_content(
    cli: Cli, ada: str, tmp_path: Path
) -> None:
    cli.ok("templates", "save", "order_shipped", "email", write(tmp_path, "t.json", SHIPPED))
    match = DELIVERY.match(
        cli.ok("send", "ada-1", "order_shipped", "--event", '{"order": "A-17"}').strip()
    )
    assert match
    delivery_id = match.group(1)
    header = [
        "id",
        "created",
        "at",
        "customer",
        "channel",
        "template",
        "status",
        "address",
        "provider",
        "reason",
    ]
    assert rows(cli.ok("deliveries", "list", "--provider", "sandbox")) == [header]
    delivered_now()

    outbox = rows(cli.ok("deliveries", "list", "--provider", "sandbox"))
    assert outbox == [
        header,
        [
            delivery_id,
            "2026-03-10T12:00:00+00:00",
            ada,
            "email",
            "order_shipped",
            "delivered",
            "ada@example.com",
            "sandbox",
            "-",
        ],
    ]
    assert len(rows(cli.ok("deliveries", "list", "--status", "queued"))) == 1  # header only

    shown = cli.ok("deliveries", "show", delivery_id)
    assert fields(shown) == {
        "id": delivery_id,
        "customer": ada,
        "channel": "email",
        "category": "transactional",
        "template": "order_shipped version 1",
        "locale": "en",
        "status": "delivered",
        "reason": "-",
        "address": "ada@example.com",
        "provider": f"sandbox (sandbox-{delivery_id})",
        "attempts": "1",
        "broadcast": "-",
        "created at": "2026-03-10T12:00:00+00:00",
        "sent at": "2026-03-10T12:00:00+00:00",
        "delivered at": "2026-03-10T12:00:00+00:00",
    }
    assert "subject: Your order A-17 is on its way, Ada\n" in shown
    assert "text: Hello Ada, order A-17 has shipped.\n" in shown  # one line, so inline
    assert "html: " in shown and "<p>" not in shown
    assert "<p>Hello Ada, order A-17 has shipped.</p>" in cli.ok(
        "deliveries", "show", delivery_id, "--html"
    )
    assert cli.json("deliveries", "show", delivery_id)["content"]["preheader"] == "Track it"
    assert cli("deliveries", "show", "nope")[::2] == (1, "error: no delivery 'nope'")


# --- broadcasts ---


def _segment_with_email(ada: str) -> None:
    traits = {"email": "bob@example.com", "firstName": "Bob"}  # no marketing consent
    message = {"type": "identify", "userId": "bob", "messageId": "b", "traits": traits}
    assert ingest([message]).rejected == []
    rule = {"type": "profile", "field": "email", "op": "exists"}
    with session_scope() as session:
        segments.create(session, SegmentCreate(key="with-email", name="With email", rule=rule))
        assert segments.compute(session, "with-email").members == 2


def test_a_broadcast_is_created_sent_and_shows_its_progress(
    cli: Cli, ada: str, tmp_path: Path
) -> None:
    _segment_with_email(ada)
    cli.ok("templates", "save", "news", "email", write(tmp_path, "n.json", NEWSLETTER))
    code, message = cli.usage("broadcasts", "create", "Spring news", "--template", "news")
    assert (code, message.endswith("Missing option '--segment'.")) == (2, True)

    made = cli.ok(
        "broadcasts", "create", "Spring news", "--template", "news", "--segment", "with-email"
    )
    match = re.fullmatch(r"broadcast ([0-9A-Z]{26}) scheduled for (\S+)\n", made)
    assert match and match.group(2) == "2026-03-10T12:00:00+00:00"
    broadcast_id = match.group(1)
    with session_scope() as session:
        assert broadcasts.expand(session, broadcast_id) == 2
    delivered_now()

    listed = rows(cli.ok("broadcasts", "list"))
    assert listed[1:] == [
        [
            broadcast_id,
            "Spring",
            "news",
            "news",
            "with-email",
            "auto",
            "sent",
            "2026-03-10T12:00:00+00:00",
            "2",
            "delivered",
            "1,",
            "suppressed",
            "1",
        ]
    ]
    shown = cli.ok("broadcasts", "show", broadcast_id)
    assert (fields(shown)["status"], fields(shown)["audience"]) == ("sent", "2")
    assert rows(shown)[-3:] == [["status", "deliveries"], ["delivered", "1"], ["suppressed", "1"]]
    assert cli.json("broadcasts", "show", broadcast_id)["progress"] == {
        "delivered": 1,
        "suppressed": 1,
    }
    by_broadcast = cli.json("deliveries", "list", "--broadcast", broadcast_id)
    assert sorted(d["status"] for d in by_broadcast) == ["delivered", "suppressed"]


def test_cancelling_a_broadcast_cancels_its_pending_deliveries(
    cli: Cli, ada: str, tmp_path: Path
) -> None:
    _segment_with_email(ada)
    cli.ok("templates", "save", "news", "email", write(tmp_path, "n.json", NEWSLETTER))
    args = ("broadcasts", "create", "Morning", "--template", "news", "--segment", "with-email")
    made = cli.json(*args, "--local-time", "09:00", "--throttle", "60")
    assert (made["local_time"], made["throttle_per_minute"], made["status"]) == (
        "09:00",
        60,
        "scheduled",
    )
    with session_scope() as session:
        broadcasts.expand(session, made["id"])
    delivered_now()  # nothing is due before 09:00 tomorrow

    assert cli.ok("broadcasts", "cancel", made["id"]) == (
        f"broadcast {made['id']} cancelled (1 deliveries cancelled)\n"
    )
    assert cli("broadcasts", "cancel", made["id"])[::2] == (
        1,
        "error: this broadcast is already cancelled",
    )
    assert fields(cli.ok("broadcasts", "show", made["id"]))["status"] == "cancelled"


def test_broadcast_errors(cli: Cli, ada: str, tmp_path: Path) -> None:
    _segment_with_email(ada)
    cli.ok("templates", "save", "news", "email", write(tmp_path, "n.json", NEWSLETTER))
    args = ("broadcasts", "create", "X", "--template", "news", "--segment")
    assert cli(*args, "nope")[::2] == (1, "error: no segment 'nope'")
    assert cli(*args, "with-email", "--at", "2026-12-01T09:00:00")[::2] == (
        2,
        "error: --at: give a time zone, e.g. 2026-12-01T09:00:00Z",
    )
    code, _, err = cli(*args, "with-email", "--local-time", "9am")
    assert code == 2 and err.startswith("error: --local-time: ")
    assert cli("broadcasts", "show", "nope")[::2] == (1, "error: no broadcast 'nope'")
    assert cli("broadcasts", "cancel", "nope")[::2] == (1, "error: no broadcast 'nope'")
    assert cli.json("broadcasts", "list") == []


# --- providers, push keys, suppressions ---


def test_providers_set_list_and_remove(cli: Cli, tmp_path: Path) -> None:
    config = {
        "host": "smtp.example.com",
        "username": "shop",
        "password": "hunter2",
        "from_address": "shop@example.com",
    }
    path = write(tmp_path, "smtp.json", config)
    saved = cli.ok(
        "providers", "set", "mail", "--channel", "email", "--kind", "smtp", "--config", f"@{path}"
    )
    assert saved == "provider mail saved: email via smtp, priority 0, enabled\n"
    assert cli.ok(
        "providers", "set", "spare", "--channel", "sms", "--kind", "sandbox", "--priority", "5"
    ) == ("provider spare saved: sms via sandbox, priority 5, enabled\n")
    cli.ok("providers", "set", "spare", "--channel", "sms", "--kind", "sandbox", "--disabled")

    listed = cli.ok("providers", "list")
    assert "hunter2" not in listed
    assert rows(listed)[1][:6] == ["mail", "email", "smtp", "0", "yes", "-"]
    assert rows(listed)[2] == ["spare", "sms", "sandbox", "0", "no", "-", "{}"]
    found = {p["name"]: p for p in cli.json("providers", "list")}
    assert found["mail"]["config"] == {**config, "password": "********"}

    assert cli.ok("providers", "remove", "spare") == "provider spare removed\n"
    assert cli("providers", "remove", "spare")[::2] == (1, "error: no provider 'spare'")
    assert [p["name"] for p in cli.json("providers", "list")] == ["mail"]


def test_provider_errors(cli: Cli) -> None:
    args = ("providers", "set", "mail", "--channel", "email", "--kind")
    code, _, err = cli(*args, "carrier-pigeon")
    assert code == 2 and err.startswith("error: unknown provider kind 'carrier-pigeon'")
    assert cli(*args, "smtp", "--config", "{nope")[0] == 2
    assert "--config is not JSON" in cli(*args, "smtp", "--config", "{nope")[2]
    assert cli(*args, "smtp", "--config", '{"port": 25}')[::2] == (
        2,
        "error: config.host: Field required",
    )
    assert cli(*args, "sandbox", "--rate", "0")[::2] == (
        2,
        "error: --rate: Input should be greater than 0",
    )
    assert cli.json("providers", "list") == []


def test_push_keys_prints_a_matching_vapid_pair(cli: Cli) -> None:
    code, out, err = cli("push", "keys")
    assert code == 0
    lines = out.splitlines()
    assert [line.split("=", 1)[0] for line in lines] == [
        "REGULARS_VAPID_PRIVATE_KEY",
        "REGULARS_VAPID_PUBLIC_KEY",
    ]
    private, public = (line.split("=", 1)[1] for line in lines)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", private)
    assert re.fullmatch(r"[A-Za-z0-9_-]{87}", public)
    assert vapid.public_key_of(private) == public
    assert vapid.b64url_decode(public, what="public key")[0] == 0x04  # uncompressed P-256
    assert "environment" in err

    keys = cli.json("push", "keys")
    assert sorted(keys) == ["private_key", "public_key"]
    assert vapid.public_key_of(keys["private_key"]) == keys["public_key"]
    assert keys["private_key"] != private  # a new pair each time


def test_suppressions_list_and_remove(cli: Cli, ada: str, tmp_path: Path) -> None:
    with session_scope() as session:
        feedback.suppress(session, MessageChannel.EMAIL, "ada@example.com", "hard_bounce")
        feedback.suppress(session, MessageChannel.SMS, "+4915112345678", "stop")
    listed = rows(cli.ok("suppressions", "list"))
    assert listed[0] == ["channel", "address", "reason", "delivery", "created", "at"]
    assert sorted(listed[1:]) == [
        ["email", "ada@example.com", "hard_bounce", "-", "2026-03-10T12:00:00+00:00"],
        ["sms", "+4915112345678", "stop", "-", "2026-03-10T12:00:00+00:00"],
    ]
    cli.ok("templates", "save", "order_shipped", "email", write(tmp_path, "t.json", SHIPPED))
    send = ("send", "ada-1", "order_shipped", "--event", '{"order": 1}')
    refused = DELIVERY.match(cli.ok(*send).strip())
    assert refused and refused.group(2) == "suppressed"
    assert str(refused.group(4)).startswith("suppressed:hard_bounce")

    assert cli.ok("suppressions", "remove", "email", "ada@EXAMPLE.com") == (
        "ada@example.com removed from the email suppressions\n"
    )
    assert [s["channel"] for s in cli.json("suppressions", "list")] == ["sms"]
    assert cli("suppressions", "remove", "email", "ada@example.com")[::2] == (
        1,
        "error: ada@example.com is not suppressed on email",
    )
    allowed = DELIVERY.match(cli.ok(*send).strip())
    assert allowed and allowed.group(2) == "queued"
