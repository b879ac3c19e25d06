"""`regulars customers show|list`, in process and through the installed `regulars` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regulars.customers.cli import app
from regulars.db import Database
from regulars.errors import Conflict, NotFound
from tests.customers.helpers import ingest, owner_of

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def _ada() -> str:
    ingest(
        [
            {
                "type": "identify",
                "userId": "ada-1",
                "messageId": "1",
                "traits": {
                    "email": "ada@example.com",
                    "firstName": "Ada",
                    "plan": "pro",
                    "consents": {"email": "subscribed"},
                },
                "timestamp": "2026-03-01T12:00:00Z",
            },
        ]
        + [
            {
                "type": "track",
                "userId": "ada-1",
                "event": f"Viewed {n:02d}",
                "messageId": f"v{n}",
                "timestamp": f"2026-03-02T12:{n:02d}:00Z",
            }
            for n in range(12)
        ]
        + [
            {
                "type": "track",
                "userId": "ada-1",
                "event": "Order Completed",
                "properties": {"revenue": 42.5},
                "messageId": "o1",
                "timestamp": "2026-03-03T12:00:00Z",
            }
        ]
    )
    customer_id = owner_of("ada-1")
    assert customer_id is not None
    return customer_id


@pytest.mark.parametrize("reference", ["id", "ada-1", "ada@example.com", "ada@EXAMPLE.com"])
def test_show_finds_by_id_external_id_or_email(database: Database, reference: str) -> None:
    customer_id = _ada()
    result = runner.invoke(app, ["show", customer_id if reference == "id" else reference])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"Customer {customer_id}" in out
    assert "ada@example.com" in out and "Ada" in out and '"plan":"pro"' in out
    assert "42.50" in out  # revenue
    assert "subscribed" in out
    assert "Last 10 events" in out
    # the last ten events: the order and views 11 down to 03
    assert "Order Completed" in out and "Viewed 11" in out and "Viewed 03" in out
    assert "Viewed 02" not in out and "identify" not in out


def test_show_unknown_reference_is_not_found(database: Database) -> None:
    _ada()
    result = runner.invoke(app, ["show", "nobody@example.com"])
    assert isinstance(result.exception, NotFound)


def test_show_refuses_an_email_shared_by_two_customers(database: Database) -> None:
    for user in ("a", "b"):
        traits = {"email": "shared@example.com"}
        ingest([{"type": "identify", "userId": user, "traits": traits, "messageId": user}])
    result = runner.invoke(app, ["show", "shared@example.com"])
    assert isinstance(result.exception, Conflict)
    assert "2 customers" in str(result.exception)


def test_list_shows_newest_customers(database: Database) -> None:
    customer_id = _ada()
    ingest([{"type": "identify", "userId": "bob", "messageId": "b", "traits": {"x": 1}}])
    bob = owner_of("bob")
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    assert customer_id in result.output and str(bob) in result.output
    only_ada = runner.invoke(app, ["list", "--email", "ada@example.com"])
    assert customer_id in only_ada.output and str(bob) not in only_ada.output


def test_the_regulars_command_shows_a_customer_and_reports_errors(
    database: Database, database_url: str
) -> None:
    customer_id = _ada()
    env = {**os.environ, "REGULARS_DATABASE_URL": database_url}
    command = [sys.executable, "-c", "from regulars.cli import main; main()"]
    shown = subprocess.run(
        [*command, "customers", "show", "ada-1"], env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    assert customer_id in shown.stdout
    missing = subprocess.run(
        [*command, "customers", "show", "nobody"], env=env, capture_output=True, text=True
    )
    assert missing.returncode == 1
    assert "error:" in missing.stderr and "nobody" in missing.stderr
