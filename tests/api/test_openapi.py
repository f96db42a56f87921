"""``/openapi.json`` matches the API: every route it lists answers, and every JSON response
validates against the schema the document declares for it."""

from __future__ import annotations

from typing import Any

import httpx
from jsonschema import Draft202012Validator
from sqlalchemy import text

from tests.api.conftest import Loaded


def _samples(loaded: Loaded) -> dict[str, Any]:
    """A real value for each parameter name a route may require."""
    with loaded.running.engine.connect() as conn:
        user, session, trace, execution = conn.execute(
            text(
                "SELECT user_id, session_id, trace_id, execution_id FROM agent_executions"
                " WHERE user_id IS NOT NULL AND session_id IS NOT NULL AND tenant_id = 'default' LIMIT 1"
            )
        ).one()
    return {
        "user_id": user,
        "session_id": session,
        "trace_id": trace,
        "execution_id": execution,
        "agent_id": "support-bot",
        "agent_id[]": ["support-bot", "research-agent"],
    }


def test_every_documented_route_answers_with_its_declared_schema(loaded: Loaded) -> None:
    document = loaded.client.get("/openapi.json").json()
    samples = _samples(loaded)
    components = document.get("components", {})
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert method == "get", f"{method.upper()} {path}: extend this test to send a body"
            url = path
            query: dict[str, Any] = {}
            for parameter in operation.get("parameters", []):
                name, where = parameter["name"], parameter["in"]
                is_list = parameter.get("schema", {}).get("type") == "array"
                if where == "path":
                    url = url.replace("{" + name + "}", str(samples[name]))
                elif parameter.get("required"):
                    key = f"{name}[]" if is_list else name
                    assert key in samples, f"GET {path} requires {name}: add a sample value to this test"
                    query[name] = samples[key]
            response = loaded.client.get(url, params=query) if query else loaded.client.get(url)
            assert response.status_code == 200, f"GET {url}: {response.status_code} {response.text[:300]}"
            content = operation["responses"]["200"].get("content", {})
            if "application/json" in content:
                schema = {**content["application/json"]["schema"], "components": components}
                errors = sorted(Draft202012Validator(schema).iter_errors(response.json()), key=str)
                assert not errors, f"GET {url}: {errors[0].message} at {list(errors[0].absolute_path)}"
            checked += 1
    assert checked >= 15
    admin_paths = [p for p in document["paths"] if p.startswith("/api/admin/")]
    for expected in ("/api/admin/metrics", "/api/admin/errors", "/api/admin/user-activity/{user_id}"):
        assert expected in admin_paths


def test_every_admin_route_refuses_calls_without_a_token(loaded: Loaded) -> None:
    """Unauthenticated calls to every admin route are refused (never a 200 or a 500)."""
    document = httpx.get(f"{loaded.running.api}/openapi.json").json()
    for path in document["paths"]:
        if path.startswith("/api/admin/"):
            url = path.replace("{user_id}", "u").replace("{agent_id}", "a").replace("{trace_id}", "0" * 32)
            url = url.replace("{session_id}", "s").replace("{execution_id}", "e")
            assert httpx.get(f"{loaded.running.api}{url}").status_code in (401, 422), url
