"""Dashboard pages of journeys: the list (with blueprints to install), one journey drawn as a
graph with its counts, conversions and uplift, publish/pause/resume, and the run inspector."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from regulars.db import session_scope
from regulars.errors import Conflict, NotFound, RegularsError, ValidationFailed
from regulars.identity.roles import Permission
from regulars.identity.staff import SignedIn
from regulars.journeys import service
from regulars.journeys.graph import Graph
from regulars.journeys.schemas import JourneyRead, NodeStats
from regulars.pages import page, render

router = APIRouter(include_in_schema=False)

can_read = page(Permission.JOURNEYS_READ)
can_write = page(Permission.JOURNEYS_WRITE)

DONE = {
    "installed": "Installed: the journey is live and its message templates are saved.",
    "published": "Published: the draft is the live version now.",
    "paused": "Paused: no run starts and runs in flight stand still.",
    "resumed": "Resumed: runs start and move on again.",
}
COLUMN, ROW = 210, 110  # the graph's spacing between nodes of a layer, and between layers
KIND_COLOURS = {
    "send": "#0969da",
    "delay": "#9a6700",
    "wait": "#9a6700",
    "branch": "#8250df",
    "split": "#8250df",
    "holdout": "#57606a",
    "exit": "#cf222e",
}


# --- the list ---


def trigger_words(trigger: Mapping[str, Any]) -> str:
    """A definition's trigger as a sentence: `when a customer does "Checkout Started"`."""
    kind = trigger.get("type")
    where = trigger.get("where") or {}
    condition = " with " + ", ".join(f"{k} = {v}" for k, v in where.items()) if where else ""
    if kind == "event":
        return f"when a customer does “{trigger.get('event')}”{condition}"
    if kind == "segment":
        verb = "leaves" if trigger.get("on") == "exited" else "enters"
        return f"when a customer {verb} segment {trigger.get('segment')}"
    if kind == "event_date":
        field = f"{trigger.get('event')}" + (
            f".{trigger['property']}" if trigger.get("property") else ""
        )
        return f"{trigger.get('offset', '0s')} from the date of “{field}”{condition}"
    if kind == "anniversary":
        before = trigger.get("days_before") or 0
        ahead = f"{before} days before " if before else "on "
        return f"every year {ahead}the date in trait {trigger.get('trait')}"
    if kind == "schedule":
        moment = trigger.get("at") or f"every day at {trigger.get('daily_at')}"
        zone = trigger.get("timezone", "UTC")
        return f"segment {trigger.get('segment')} enters {moment} ({zone})"
    if kind == "api":
        return "started through the API (POST /api/journeys/{key}/runs)"
    return str(kind or "no trigger")


@router.get("/journeys")
def journeys_list(
    request: Request,
    done: str = Query("", max_length=20),
    staff: SignedIn = Depends(can_read),
) -> HTMLResponse:
    return _list_page(request, staff, message=DONE.get(done, ""))


def _list_page(
    request: Request, staff: SignedIn, *, message: str = "", error: str = "", status: int = 200
) -> HTMLResponse:
    with session_scope(readonly=True) as session:
        summaries = service.summaries(session)
    installed = {s.journey.key for s in summaries}
    return render(
        request,
        "journeys/list.html",
        staff,
        status=status,
        title="Journeys",
        summaries=summaries,
        triggers={
            s.journey.key: trigger_words(s.journey.draft.get("trigger", {})) for s in summaries
        },
        blueprints=[b for b in service.blueprint_list() if b.key not in installed],
        message=message,
        error=error,
    )


@router.post("/journeys/blueprints/{key}")
def install_blueprint(request: Request, key: str, staff: SignedIn = Depends(can_write)) -> Response:
    try:
        with session_scope() as session:
            service.install_blueprint(session, key)
    except (NotFound, Conflict, ValidationFailed) as exc:
        return _list_page(request, staff, error=exc.message, status=exc.status)
    return RedirectResponse(f"/journeys/{quote(key, safe='')}?done=installed", status_code=303)


# --- the run inspector (before /journeys/{key}, so `runs` is not taken for a key) ---


@router.get("/journeys/runs/{run_id}")
def run_page(request: Request, run_id: str, staff: SignedIn = Depends(can_read)) -> HTMLResponse:
    with session_scope(readonly=True) as session:
        found = service.inspect_run(session, run_id)
    if found is None:
        raise NotFound(f"no journey run {run_id!r}")
    return render(
        request, "journeys/run.html", staff, title=f"Run {run_id}", inspection=found, r=found.run
    )


# --- one journey ---


@router.get("/journeys/{key}")
def journey_page(
    request: Request,
    key: str,
    customer: str = Query("", max_length=200),
    done: str = Query("", max_length=20),
    staff: SignedIn = Depends(can_read),
) -> HTMLResponse:
    return _journey_page(request, staff, key, customer=customer.strip(), message=DONE.get(done, ""))


def _journey_page(
    request: Request,
    staff: SignedIn,
    key: str,
    *,
    customer: str = "",
    message: str = "",
    error: RegularsError | None = None,
) -> HTMLResponse:
    with session_scope(readonly=True) as session:
        journey = service.get(session, key)
        if journey is None:
            raise NotFound(f"journey {key!r} not found")
        stats = service.stats_of(session, key)
        graph = service.graph_of(session, journey)
        try:
            runs = service.recent_runs(session, journey, customer=customer or None).items
        except Conflict as exc:  # an email several customers share
            runs, runs_error = [], exc.message
        else:
            runs_error = ""
        definition = service.export_yaml(session, key)
    option = graph_option(graph, stats.nodes) if graph is not None else None
    return render(
        request,
        "journeys/journey.html",
        staff,
        status=error.status if error is not None else 200,
        title=journey.name,
        journey=journey,
        trigger=trigger_words(journey.draft.get("trigger", {})),
        stats=stats,
        option=option,
        graph_height=_graph_height(graph),
        runs=runs,
        runs_error=runs_error,
        customer=customer,
        definition=definition,
        actions=_actions(journey),
        message=message,
        error=error,
    )


def _actions(journey: JourneyRead) -> list[tuple[str, str]]:
    """The (path word, button label) of the changes the journey's status allows."""
    found = []
    if journey.status != "archived" and (journey.live_version is None or journey.draft_changed):
        found.append(("publish", "Publish the draft"))
    if journey.status == "live":
        found.append(("pause", "Pause"))
    if journey.status == "paused":
        found.append(("resume", "Resume"))
    return found


CHANGES: dict[str, tuple[Callable[[Session, str], JourneyRead], str]] = {
    "publish": (lambda session, key: service.publish(session, key), "published"),
    "pause": (service.pause, "paused"),
    "resume": (service.resume, "resumed"),
}


def _change(request: Request, staff: SignedIn, key: str, verb: str) -> Response:
    change, done = CHANGES[verb]
    try:
        with session_scope() as session:
            change(session, key)
    except (Conflict, ValidationFailed) as exc:
        return _journey_page(request, staff, key, error=exc)
    return RedirectResponse(f"/journeys/{quote(key, safe='')}?done={done}", status_code=303)


@router.post("/journeys/{key}/publish")
def publish(request: Request, key: str, staff: SignedIn = Depends(can_write)) -> Response:
    return _change(request, staff, key, "publish")


@router.post("/journeys/{key}/pause")
def pause(request: Request, key: str, staff: SignedIn = Depends(can_write)) -> Response:
    return _change(request, staff, key, "pause")


@router.post("/journeys/{key}/resume")
def resume(request: Request, key: str, staff: SignedIn = Depends(can_write)) -> Response:
    return _change(request, staff, key, "resume")


# --- the graph ---


def layers(graph: Graph) -> dict[int, list[str]]:
    """Node ids by distance from the start (breadth first, in the graph's reading order)."""
    order = graph.order()
    depth = {order[0]: 0}
    for node_id in order:
        for target in graph.nodes[node_id].successors().values():
            depth.setdefault(target, depth[node_id] + 1)
    found: dict[int, list[str]] = {}
    for node_id in order:
        found.setdefault(depth[node_id], []).append(node_id)
    return found


def _graph_height(graph: Graph | None) -> int:
    """One row of the chart per layer, so the graph is drawn at about its own size."""
    return max(260, len(layers(graph)) * ROW + 40) if graph is not None else 260


def _edge_label(kind: str, edge: str, *, alone: bool) -> str:
    """`paths.a` -> `a`, `timeout_next` -> `timeout`, a wait's `next` -> `heard`; the only
    edge of a node goes unlabelled."""
    if alone:
        return ""
    if edge == "next":
        return "heard" if kind == "wait" else "next"
    return edge.removeprefix("paths.").removesuffix("_next")


def _node_label(kind: str, node_id: str, counts: NodeStats | None) -> str:
    if counts is None:
        return f"{kind} · {node_id}\nno runs yet"
    return (
        f"{kind} · {node_id}\n{counts.entered} entered · {counts.waiting} waiting\n"
        f"{counts.moved_on} moved on · {counts.exited} exited"
    )


def graph_option(graph: Graph, nodes: list[NodeStats]) -> dict[str, Any]:
    """The ECharts option drawing the journey top down, one row per layer."""
    counts = {n.node_id: n for n in nodes}
    data = []
    for layer, ids in layers(graph).items():
        for index, node_id in enumerate(ids):
            kind = graph.nodes[node_id].kind
            found = counts.get(node_id)
            data.append(
                {
                    "id": node_id,
                    "name": node_id,
                    "x": (index - (len(ids) - 1) / 2) * COLUMN,
                    "y": layer * ROW,
                    "value": found.entered if found else 0,
                    "label": {"formatter": _node_label(kind, node_id, found)},
                    "itemStyle": {"color": KIND_COLOURS.get(kind, "#1a7f37")},
                }
            )
    links: list[dict[str, Any]] = []
    for node_id in graph.order():
        node = graph.nodes[node_id]
        edges = node.successors()
        for edge, target in edges.items():
            label = _edge_label(node.kind, edge, alone=len(edges) == 1)
            links.append({"source": node_id, "target": target, "label": {"formatter": label}})
    return {
        "animation": False,
        "tooltip": {},
        "series": [
            {
                "type": "graph",
                "layout": "none",
                "roam": True,
                "symbol": "roundRect",
                "symbolSize": [170, 66],
                "edgeSymbol": ["none", "arrow"],
                "edgeSymbolSize": 9,
                "label": {"show": True, "color": "#fff", "fontSize": 11, "lineHeight": 15},
                "edgeLabel": {"show": True, "fontSize": 11, "color": "#57606a"},
                "lineStyle": {"color": "#8c959f", "width": 1.5, "curveness": 0.08},
                "data": data,
                "links": links,
            }
        ],
    }
