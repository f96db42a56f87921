"""The FastAPI application served on ``--http``.

Routers for the admin API are added by ``create_api_app``; storage is read through the
``ReadModel`` (a separate read engine, never the writer's connection).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from sqlalchemy import Engine, text

from agent_otel import __version__
from agent_otel.collector.api.auth import AdminAuth

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class ApiContext:
    """What the API routes need; passed in, never global."""

    engine: Engine
    registry: CollectorRegistry
    auth: AdminAuth
    is_ready: Callable[[], bool]
    extras: dict[str, Any]


def create_api_app(ctx: ApiContext, routers: list[Any] | None = None) -> FastAPI:
    app = FastAPI(
        title="agent-otel",
        version=__version__,
        description="Health, Prometheus metrics and the admin API of the agent-otel collector.",
    )
    app.state.ctx = ctx

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        accept = request.headers.get("accept", "")
        if "application/openmetrics-text" in accept:
            body = generate_openmetrics(ctx.registry)  # type: ignore[no-untyped-call]
            return Response(body, media_type=OPENMETRICS_TYPE)
        return Response(generate_latest(ctx.registry), media_type=PROMETHEUS_TYPE)

    @app.get("/healthz", response_class=PlainTextResponse, summary="Liveness: the process serves requests")
    def healthz() -> str:
        return "ok"

    @app.get("/readyz", summary="Readiness: the database answers and the writer accepts work")
    def readyz() -> JSONResponse:
        database = True
        try:
            with ctx.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            database = False
        writer = ctx.is_ready()
        ready = database and writer
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "database": database, "writer": writer},
            status_code=200 if ready else 503,
        )

    for router in routers or []:
        app.include_router(router)
    return app
