"""The layering rules of STYLE.md, checked on the source's import statements.

- kit/ imports no domain;
- only repository.py or a repository/ sub-package (and migrations) build queries: services,
  APIs, CLIs and tasks never import select/insert/update/delete from SQLAlchemy;
- services never import FastAPI, Starlette or Typer;
- a domain reaches another through its service (or models for types), never its api/cli/views
  or repository; routers share identity.api's API-key dependency and pages identity.staff's
  signed-in user; identity.roles (the permission table) is pure rules.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "regulars"
DOMAINS = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()} - {"kit"}
QUERY_BUILDERS = {"select", "insert", "update", "delete", "text"}
WEB = ("fastapi", "starlette", "typer", "click")


def _imports(path: Path) -> list[tuple[str, set[str]]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, set[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, {alias.name for alias in node.names}))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, set()) for alias in node.names)
    return found


def _modules() -> list[tuple[Path, str | None]]:
    result = []
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).parts
        result.append((path, parts[0] if len(parts) > 1 else None))
    return result


def test_kit_imports_no_domain() -> None:
    for path in (SRC / "kit").rglob("*.py"):
        for module, _ in _imports(path):
            top = module.split(".")[1] if module.startswith("regulars.") else None
            assert top not in DOMAINS, f"{path.name} imports {module}"


def test_only_repositories_build_queries() -> None:
    for path, domain in _modules():
        if domain is None or domain == "kit" or path.name in ("repository.py", "models.py"):
            continue
        if path.parent.name == "repository":
            continue  # a repository grown into a sub-package
        for module, names in _imports(path):
            if module.startswith("sqlalchemy"):
                built = names & QUERY_BUILDERS
                assert not built, f"{path.relative_to(SRC)} builds queries with {built}"


def test_services_import_no_web_or_cli_framework() -> None:
    for path in SRC.rglob("service.py"):
        for module, _ in _imports(path):
            assert not module.startswith(WEB), f"{path.relative_to(SRC)} imports {module}"


def test_domains_reach_each_other_only_through_services_and_models() -> None:
    allowed = {"service", "models", "schemas", "rules", "roles"}
    # The API-key and write-key checks every router uses, and the signed-in staff user that
    # every dashboard page receives.
    boundary = {"regulars.identity.api", "regulars.identity.staff"}
    for path, domain in _modules():
        if domain is None:
            continue
        for module, _ in _imports(path):
            parts = module.split(".")
            if len(parts) < 3 or parts[0] != "regulars" or parts[1] not in DOMAINS:
                continue
            is_boundary = path.name in ("api.py", "views.py") or path.name.startswith("dashboard")
            if module in boundary and is_boundary:
                continue
            if parts[1] != domain and domain != "demo":
                assert parts[2] in allowed, f"{path.relative_to(SRC)} imports {module}"
