"""The permission table of docs/access.md is the one the code enforces."""

from __future__ import annotations

from pathlib import Path

from regulars.identity.models import ApiKeyScope, Role
from regulars.identity.roles import ROLE_PERMISSIONS, Permission, may_manage, role_allows

DOC = Path(__file__).resolve().parents[2] / "docs" / "access.md"


def _documented_table() -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 7:
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_docs_table_lists_every_permission_with_its_scope_and_roles() -> None:
    table = _documented_table()
    assert set(table) == {permission.value for permission in Permission}
    for permission in Permission:
        scope, *by_role = table[permission.value]
        assert scope == permission.api_scope.value
        granted = {role.value for role in Role if permission in ROLE_PERMISSIONS[role]}
        documented = {role.value for role, cell in zip(Role, by_role, strict=True) if cell == "yes"}
        assert documented == granted, permission


def test_analyst_reads_everything_but_settings_and_changes_nothing() -> None:
    reads = {p for p in Permission if p.api_scope is ApiKeyScope.READ}
    assert ROLE_PERMISSIONS[Role.ANALYST] == reads
    assert not role_allows(Role.ANALYST, Permission.SETTINGS_MANAGE)


def test_only_owners_manage_owners() -> None:
    assert may_manage(Role.OWNER, Role.OWNER)
    assert not may_manage(Role.ADMIN, Role.OWNER)
    assert may_manage(Role.ADMIN, Role.MARKETER)
    assert not may_manage(Role.MARKETER, Role.AGENT)
