"""`regulars import events|customers`: good rows kept, bad rows reported by line, re-runs safe."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select

from regulars.customers.importer import (
    FileFormat,
    ImportKind,
    cell_value,
    customer_message,
    event_message,
    import_file,
)
from regulars.customers.models import Consent, Customer, CustomerFacts, Event
from regulars.db import Database, session_scope
from regulars.identity import service as identity
from tests.cli import run_cli

GOOD = {
    "type": "track",
    "userId": "u1",
    "event": "Order Completed",
    "timestamp": "2025-06-01T10:00:00Z",
    "properties": {"order_id": "o1", "revenue": 20.5},
}


def _line(message: object) -> str:
    return orjson.dumps(message).decode()


def _count(model: type[Event] | type[Customer]) -> int:
    with session_scope(readonly=True) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _rejects(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture
def events_jsonl(tmp_path: Path) -> Path:
    lines = [
        _line(GOOD),
        _line({**GOOD, "messageId": "m-2", "userId": "u2"}),
        "{not json",
        "",
        _line(["a", "list"]),
        _line({**GOOD, "properties": {"order_id": "o3", "revenue": 7}, "userId": "u1"}),
        _line({"type": "shout", "userId": "u3"}),
        _line({"type": "track", "event": "Product Viewed"}),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_jsonl_keeps_good_lines_and_reports_bad_ones_by_line(
    database: Database, events_jsonl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = run_cli(["import", "events", str(events_jsonl)], monkeypatch)

    assert code == 1
    rejects = _rejects(events_jsonl.with_name("events.jsonl.rejects.jsonl"))
    assert [(r["line"], r["code"]) for r in rejects] == [
        (3, "invalid_json"),
        (5, "invalid_message"),
        (7, "invalid_type"),
        (8, "missing_identity"),
    ]
    assert rejects[0]["row"] == "{not json"
    assert rejects[2]["row"] == {"type": "shout", "userId": "u3"}
    assert _count(Event) == 3


def test_jsonl_import_adds_orders_to_facts(database: Database, events_jsonl: Path) -> None:
    summary = import_file(events_jsonl, kind=ImportKind.EVENTS)

    assert (summary.rows, summary.imported, summary.rejected) == (7, 3, 4)
    with session_scope(readonly=True) as session:
        facts = session.execute(
            select(CustomerFacts.orders_count, CustomerFacts.revenue_total_cents)
            .join(Customer, Customer.id == CustomerFacts.customer_id)
            .where(Customer.external_id == "u1")
        ).one()
    assert tuple(facts) == (2, 2750)


def test_reimporting_a_file_stores_nothing_twice(database: Database, events_jsonl: Path) -> None:
    first = import_file(events_jsonl, kind=ImportKind.EVENTS, chunk_size=2)
    again = import_file(events_jsonl, kind=ImportKind.EVENTS, chunk_size=3)

    assert first.imported == 3
    assert (again.imported, again.duplicates) == (0, 3)
    assert _count(Event) == 3


def test_a_clean_file_exits_0_and_leaves_no_rejects_file(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "clean.ndjson"
    path.write_text(_line(GOOD) + "\n")
    stale = tmp_path / "clean.ndjson.rejects.jsonl"
    stale.write_text("{}\n")

    assert run_cli(["import", "events", str(path)], monkeypatch) == 0
    assert not stale.exists()
    assert _count(Event) == 1


def test_rejects_path_and_source_can_be_chosen(
    database: Database, events_jsonl: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rejects = tmp_path / "bad.jsonl"
    args = ["import", "events", str(events_jsonl), "--rejects", str(rejects), "--source", "shop"]

    assert run_cli(args, monkeypatch) == 1
    assert len(_rejects(rejects)) == 4
    assert not events_jsonl.with_name("events.jsonl.rejects.jsonl").exists()
    with session_scope(readonly=True) as session:
        shop = next(s for s in identity.list_sources(session) if s.name == "shop")
        sources = set(session.scalars(select(Event.source)))
    assert sources == {shop.id}


def test_csv_events_become_nested_messages_and_bad_rows_keep_their_line(
    database: Database, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "type,userId,event,timestamp,properties.order_id,properties.revenue,"
        "properties.address.city\n"
        "track,u1,Order Completed,2025-06-01T10:00:00Z,o1,12.5,Berlin\n"
        'track,u2,Order Completed,2025-06-02T10:00:00Z,o2,30,"Saint-\nDenis"\n'
        "track,u3,Order Completed\n"
        "\n"
        "track,,Order Completed,2025-06-03T10:00:00Z,o4,5,Paris\n"
        "track,u4,Order Completed,2025-06-04T10:00:00Z,o5,8,Lyon\n"
    )

    summary = import_file(path, kind=ImportKind.EVENTS)

    assert [(r.line, r.code) for r in summary.rejects] == [
        (5, "invalid_row"),  # the quoted city of the row before spans lines 3 and 4
        (7, "missing_identity"),
    ]
    assert summary.imported == 3
    with session_scope(readonly=True) as session:
        first_order = select(Event).where(Event.name == "Order Completed")
        event = session.scalars(first_order.order_by(Event.timestamp)).first()
        revenue = session.scalar(select(func.sum(CustomerFacts.revenue_total_cents)))
    assert event is not None
    assert event.properties["address"] == {"city": "Berlin"}
    assert revenue == 1250 + 3000 + 800


def test_csv_rows_without_message_id_are_not_stored_twice(
    database: Database, tmp_path: Path
) -> None:
    path = tmp_path / "views.csv"
    path.write_text(
        "type,anonymousId,event,timestamp,properties.sku\n"
        "track,a1,Product Viewed,2025-06-01T10:00:00Z,BN-1\n"
        "track,a1,Product Viewed,2025-06-01T10:05:00Z,BN-1\n"
    )
    copy = tmp_path / "copy-elsewhere.csv"
    copy.write_bytes(path.read_bytes())

    first = import_file(path, kind=ImportKind.EVENTS)
    again = import_file(copy, kind=ImportKind.EVENTS)

    assert (first.imported, again.imported, again.duplicates) == (2, 0, 2)
    assert _count(Event) == 2


def test_csv_customers_become_profiles_with_traits_and_consents(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "customers.csv"
    path.write_text(
        "userId,email,phone,first_name,last_name,timezone,locale,plan,consents.email\n"
        "c1,ANA@Example.com,+4915123456789,Ana,Lopez,Europe/Berlin,de-DE,pro,subscribed\n"
        "c2,not-an-email,,Bo,,,,free,\n"
        "c3,cy@example.com,,Cy,,Mars/Olympus,,free,\n"
    )

    code = run_cli(["import", "customers", str(path)], monkeypatch)

    assert code == 1
    rejects = _rejects(tmp_path / "customers.csv.rejects.jsonl")
    assert [r["line"] for r in rejects] == [3, 4]
    with session_scope(readonly=True) as session:
        ana = session.scalars(select(Customer).where(Customer.external_id == "c1")).one()
        consent = session.scalars(select(Consent).where(Consent.customer_id == ana.id)).one()
    assert (ana.email, ana.phone, ana.first_name, ana.timezone, ana.locale) == (
        "ANA@example.com", "+4915123456789", "Ana", "Europe/Berlin", "de-DE"
    )  # fmt: skip
    assert ana.traits["plan"] == "pro"
    assert (consent.channel, consent.status) == ("email", "subscribed")
    assert _count(Customer) == 1


def test_unknown_format_and_unknown_columns_exit_2(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "events.xlsx"
    data.write_text("x\n")
    columns = tmp_path / "odd.csv"
    columns.write_text("type,userId,colour\ntrack,u1,red\n")

    assert run_cli(["import", "events", str(data)], monkeypatch) == 2
    assert run_cli(["import", "events", str(columns)], monkeypatch) == 2
    assert run_cli(["import", "events", str(data), "--format", "csv"], monkeypatch) == 2
    assert _count(Event) == 0


def test_chunk_size_goes_up_to_100_000_rows_and_no_further(
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "clean.jsonl"
    path.write_text(_line(GOOD) + "\n")

    assert run_cli(["import", "events", str(path), "--chunk-size", "100001"], monkeypatch) == 2
    assert "--chunk-size" in capsys.readouterr().err
    assert _count(Event) == 0
    assert run_cli(["import", "events", str(path), "--chunk-size", "100000"], monkeypatch) == 0
    assert _count(Event) == 1


def test_format_option_overrides_the_extension(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_text(_line(GOOD) + "\n")

    summary = import_file(path, kind=ImportKind.EVENTS, file_format=FileFormat.JSONL)

    assert (summary.imported, summary.rejected) == (1, 0)


def test_cells_that_read_as_json_become_values() -> None:
    assert cell_value("42") == 42
    assert cell_value("12.5") == 12.5
    assert cell_value("true") is True
    assert cell_value('["a", 1]') == ["a", 1]
    assert cell_value("01234") == "01234"
    assert cell_value("+4930123456") == "+4930123456"
    assert cell_value("Berlin") == "Berlin"


def test_event_and_customer_rows_map_to_segment_messages() -> None:
    event = event_message({"type": "page", "name": "Home", "context.locale": "fr-FR",
                           "properties.path": "/", "userId": ""})  # fmt: skip
    customer = customer_message({"userId": "c1", "email": "a@b.co", "address.city": "Paris",
                                 "traits.vip": "true"})  # fmt: skip

    assert event == {"type": "page", "name": "Home", "context": {"locale": "fr-FR"},
                     "properties": {"path": "/"}}  # fmt: skip
    traits = {"email": "a@b.co", "address": {"city": "Paris"}, "vip": True}
    assert customer == {"type": "identify", "userId": "c1", "traits": traits}


def test_every_reject_reaches_the_file_while_only_a_few_stay_in_memory(
    database: Database, tmp_path: Path
) -> None:
    path = tmp_path / "mostly_bad.jsonl"
    good = {"type": "track", "userId": "u1", "event": "Seen", "messageId": "ok"}
    lines = [orjson.dumps(good)] + [b'{"type": "track"}'] * 25  # no identity, no event
    path.write_bytes(b"\n".join(lines) + b"\n")

    summary = import_file(path, kind=ImportKind.EVENTS, chunk_size=7)

    assert (summary.imported, summary.rejected, len(summary.rejects)) == (1, 25, 10)
    written = _rejects(tmp_path / "mostly_bad.jsonl.rejects.jsonl")
    assert [r["line"] for r in written] == list(range(2, 27))
    assert summary.rejects_path == tmp_path / "mostly_bad.jsonl.rejects.jsonl"
