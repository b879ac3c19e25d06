"""A definition checked as a whole: each node parsed by its kind, every edge pointing at a
node, every node reachable from the start, and no loop a run could go round without ever
stopping to wait. Errors carry the path of the problem (`nodes.remind.next`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from regulars.journeys.definition import Definition
from regulars.journeys.nodes import NODE_KINDS, Node


class DefinitionInvalid(ValueError):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(f"{first['path'] or 'definition'}: {first['message']}")


@dataclass(frozen=True)
class Graph:
    definition: Definition
    nodes: Mapping[str, Node]

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def order(self) -> list[str]:
        """Node ids from the start along the edges (breadth first): the order a reader
        follows, kept however the database stored the definition (JSONB sorts keys)."""
        found = [self.definition.start]
        for node_id in found:
            found += [t for t in self.nodes[node_id].successors().values() if t not in found]
        return found

    def canonical(self) -> dict[str, Any]:
        """The definition as a document reads best: trigger, entry, exit, goal, start, then
        the nodes in `order`, each with its type first."""
        raw = self.definition.model_dump(mode="json", exclude_unset=True, exclude={"nodes"})
        keys = ("trigger", "entry", "exit", "goal", "start")
        document: dict[str, Any] = {k: raw[k] for k in keys if k in raw}
        document["nodes"] = {}
        for node_id in self.order():
            body = self.definition.nodes[node_id]
            document["nodes"][node_id] = {"type": body["type"]} | {
                k: v for k, v in body.items() if k != "type"
            }
        return document


def compile_graph(raw: object) -> Graph:
    """The definition parsed and checked, or DefinitionInvalid listing every problem."""
    try:
        definition = Definition.model_validate(raw)
    except ValidationError as exc:
        raise DefinitionInvalid(_pydantic_errors(exc, prefix="")) from None
    errors: list[dict[str, str]] = []
    nodes = _parse_nodes(definition.nodes, errors)
    if not errors:
        errors += _edge_errors(definition.start, nodes)
    if not errors:
        errors += _reach_errors(definition.start, nodes)
        errors += _loop_errors(nodes)
    if errors:
        raise DefinitionInvalid(errors)
    return Graph(definition, nodes)


def _parse_nodes(
    raw: Mapping[str, Mapping[str, Any]], errors: list[dict[str, str]]
) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    for node_id, body in raw.items():
        kind = body.get("type")
        node_class = NODE_KINDS.get(kind) if isinstance(kind, str) else None
        if node_class is None:
            known = ", ".join(sorted(NODE_KINDS))
            errors.append(
                {
                    "path": f"nodes.{node_id}.type",
                    "message": f"unknown node type {kind!r}; use one of {known}",
                }
            )
            continue
        try:
            nodes[node_id] = node_class.model_validate(body)
        except ValidationError as exc:
            errors += _pydantic_errors(exc, prefix=f"nodes.{node_id}")
    return nodes


def _edge_errors(start: str, nodes: Mapping[str, Node]) -> list[dict[str, str]]:
    errors = []
    if start not in nodes:
        errors.append({"path": "start", "message": f"no node {start!r}"})
    for node_id, node in nodes.items():
        for edge, target in node.successors().items():
            if target not in nodes:
                errors.append({"path": f"nodes.{node_id}.{edge}", "message": f"no node {target!r}"})
    return errors


def _reach_errors(start: str, nodes: Mapping[str, Node]) -> list[dict[str, str]]:
    seen, todo = {start}, [start]
    while todo:
        for target in nodes[todo.pop()].successors().values():
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return [
        {"path": f"nodes.{node_id}", "message": "no path from the start reaches this node"}
        for node_id in nodes
        if node_id not in seen
    ]


def _loop_errors(nodes: Mapping[str, Node]) -> list[dict[str, str]]:
    """A cycle among nodes that do not always hold a run would run forever in one go (a
    `between` delay lets runs inside its window through)."""
    instant = {node_id for node_id, node in nodes.items() if not node.always_waits()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node_id: str, path: list[str]) -> list[str] | None:
        state[node_id] = 1
        for target in nodes[node_id].successors().values():
            if target not in instant:
                continue
            if state.get(target) == 1:
                return (
                    [*path[path.index(target) :], target] if target in path else [node_id, target]
                )
            if target not in state:
                found = visit(target, [*path, target])
                if found:
                    return found
        state[node_id] = 2
        return None

    for node_id in sorted(instant):
        if node_id not in state:
            loop = visit(node_id, [node_id])
            if loop:
                return [
                    {
                        "path": f"nodes.{loop[0]}",
                        "message": "a loop without a delay or wait: " + " -> ".join(loop),
                    }
                ]
    return []


def _pydantic_errors(exc: ValidationError, *, prefix: str) -> list[dict[str, str]]:
    found = []
    for error in exc.errors(include_url=False):
        parts = _without_union_tags([str(p) for p in error["loc"]])
        path = ".".join([prefix, *parts] if prefix else parts)
        found.append({"path": path, "message": error["msg"].removeprefix("Value error, ")})
    return found


def _without_union_tags(parts: list[str]) -> list[str]:
    """Pydantic puts the chosen union member in the location (`trigger.event.where`)."""
    if parts[:1] == ["trigger"] and len(parts) > 1:
        parts = parts[:1] + parts[2:]
    elif parts[:1] == ["exit"] and len(parts) > 2:
        parts = parts[:2] + parts[3:]
    return [p for p in parts if not p.startswith("function-") and "[" not in p]
