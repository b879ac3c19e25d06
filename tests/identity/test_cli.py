"""`regulars sources` and `regulars apikeys`: the printed secrets work against the real API."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from regulars.app import create_app
from regulars.db import Database, session_scope
from regulars.errors import NotFound
from regulars.identity.cli import apikeys_app, sources_app
from regulars.identity.service import get_source_by_write_key, list_api_keys
from tests.identity.keys import bearer

runner = CliRunner()


def _last_line(output: str) -> str:
    return output.rstrip("\n").splitlines()[-1]


def test_sources_create_prints_the_write_key_last_and_list_shows_it(database: Database) -> None:
    created = runner.invoke(sources_app, ["create", "web"])
    assert created.exit_code == 0, created.output
    write_key = _last_line(created.output)
    assert write_key.startswith("wk_") and " " not in write_key
    with session_scope(readonly=True) as session:
        source = get_source_by_write_key(session, write_key)
        assert source is not None and source.name == "web"
    listed = runner.invoke(sources_app, ["list"])
    assert listed.exit_code == 0, listed.output
    assert "web" in listed.output and write_key in listed.output


def test_sources_create_twice_fails_with_conflict(database: Database) -> None:
    assert runner.invoke(sources_app, ["create", "web"]).exit_code == 0
    again = runner.invoke(sources_app, ["create", "web"])
    assert again.exit_code != 0
    assert "exists already" in str(again.exception)


def test_apikeys_create_list_revoke_and_the_key_works_until_revoked(database: Database) -> None:
    client = TestClient(create_app(with_worker=False))
    created = runner.invoke(apikeys_app, ["create", "crm-sync", "--scope", "write"])
    assert created.exit_code == 0, created.output
    key = _last_line(created.output)
    assert key.startswith("rk_") and " " not in key
    assert client.get("/api/customers", headers=bearer(key)).status_code == 200
    assert client.get("/api/customers/x/export", headers=bearer(key)).status_code == 403

    listed = runner.invoke(apikeys_app, ["list"])
    assert listed.exit_code == 0, listed.output
    with session_scope(readonly=True) as session:
        (api_key,) = list_api_keys(session)
        api_key_id, prefix = api_key.id, api_key.prefix
    assert api_key_id in listed.output and "crm-sync" in listed.output
    assert prefix + "..." in listed.output and "write" in listed.output
    assert key not in listed.output

    revoked = runner.invoke(apikeys_app, ["revoke", api_key_id])
    assert revoked.exit_code == 0, revoked.output
    assert client.get("/api/customers", headers=bearer(key)).status_code == 401


def test_apikeys_create_refuses_an_unknown_scope(database: Database) -> None:
    result = runner.invoke(apikeys_app, ["create", "x", "--scope", "root"])
    assert result.exit_code == 2
    with session_scope(readonly=True) as session:
        assert list(list_api_keys(session)) == []


def test_apikeys_revoke_unknown_id_is_not_found(database: Database) -> None:
    result = runner.invoke(apikeys_app, ["revoke", "nope"])
    assert isinstance(result.exception, NotFound)


@pytest.mark.parametrize(
    ("args", "scope"),
    [
        ([], "read"),
        (["--scope", "read"], "read"),
        (["--scope", "write"], "write"),
        (["--scope", "admin"], "admin"),
    ],
)
def test_apikeys_create_defaults_to_read_scope(
    database: Database, args: list[str], scope: str
) -> None:
    result = runner.invoke(apikeys_app, ["create", "k", *args])
    assert result.exit_code == 0, result.output
    with session_scope(readonly=True) as session:
        assert [k.scope for k in list_api_keys(session)] == [scope]
