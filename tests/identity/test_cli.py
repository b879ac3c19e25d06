"""`regulars sources` and `regulars apikeys`: the printed secrets work against the real API."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from regulars.app import create_app
from regulars.db import Database, session_scope
from regulars.errors import NotFound
from regulars.identity import staff
from regulars.identity.cli import apikeys_app, sources_app, users_app
from regulars.identity.models import Role
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


def test_users_create_with_a_generated_password_that_signs_in(database: Database) -> None:
    created = users_runner_invoke(
        ["create", "ana@shop.example", "--name", "Ana", "--role", "analyst"]
    )
    password = _last_line(created.output)
    assert len(password) >= 16 and " " not in password
    with session_scope() as session:
        assert staff.sign_in(session, "ana@shop.example", password, ip="127.0.0.1") is not None
    listed = users_runner_invoke(["list"])
    assert "ana@shop.example" in listed.output and "analyst" in listed.output


def test_users_set_role_disable_and_reset_password(database: Database) -> None:
    users_runner_invoke(
        ["create", "ana@shop.example", "--name", "Ana", "--password", "first password"]
    )
    users_runner_invoke(["set-role", "ana@shop.example", "marketer"])
    with session_scope(readonly=True) as session:
        assert staff.get_user(session, "ana@shop.example").role == Role.MARKETER
    users_runner_invoke(["disable", "ana@shop.example"])
    with session_scope() as session:
        assert staff.sign_in(session, "ana@shop.example", "first password", ip="x") is None
    users_runner_invoke(["enable", "ana@shop.example"])
    reset = users_runner_invoke(["reset-password", "ana@shop.example"])
    with session_scope() as session:
        assert staff.sign_in(session, "ana@shop.example", "first password", ip="x") is None
        assert staff.sign_in(session, "ana@shop.example", _last_line(reset.output), ip="x")


def test_users_set_role_refuses_to_demote_the_last_owner(database: Database) -> None:
    users_runner_invoke(["create", "olga@shop.example", "--name", "Olga", "--role", "owner"])
    demoted = runner.invoke(users_app, ["set-role", "olga@shop.example", "admin"])
    assert demoted.exit_code != 0
    assert "last active owner" in str(demoted.exception)


def users_runner_invoke(args: list[str]) -> Result:
    answer = runner.invoke(users_app, args)
    assert answer.exit_code == 0, answer.output
    return answer
