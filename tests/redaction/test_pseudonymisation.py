"""User ids pseudonymised with a keyed HMAC (``sanitizer.user_id_hmac_key``): analytics per user
still work (one stable pseudonym per user, in every table and in the admin API), and the real ids
are stored nowhere; without a key, ids that hold personal data are hashed anyway."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from sqlalchemy import text

from agent_otel.sanitize import pseudonymize
from tests.conftest import RunningCollector, wait_for_rollups
from tests.otlp_helpers import agent_trace, http_exporter, sdk_provider
from tests.redaction.test_redaction_e2e import dump_everything

KEY = "a-long-random-pseudonymisation-key"
ADMIN = "admin-token-for-pseudonym-tests"
USERS = {"alice.smith@example.com": 3, "user-42": 2, "+1 415 555 0123": 1}


def test_same_user_same_pseudonym_and_the_real_id_is_stored_nowhere(
    db_url: str, collector_factory: Callable[..., RunningCollector]
) -> None:
    running = collector_factory(db_url, admin_token=ADMIN, **{"sanitizer.user_id_hmac_key": KEY})
    with sdk_provider(http_exporter(running.http_endpoint)) as tracer:
        for user, executions in USERS.items():
            for i in range(executions):
                agent_trace(tracer, agent="support-bot", user=user, session=f"{user}-session-{i}")

    expected = {user: pseudonymize(user, KEY.encode()) for user in USERS}
    wait_for_rollups(running.engine)
    with running.engine.connect() as conn:
        per_user = {r[0]: r[1] for r in conn.execute(text("SELECT user_id, count(*) FROM agent_executions GROUP BY 1"))}
        interactions = {
            r[0]: r[1] for r in conn.execute(text("SELECT user_id, total_executions FROM user_agent_interactions"))
        }
        usage = {r[0] for r in conn.execute(text("SELECT user_id FROM usage_daily"))}
        sessions = {r[0] for r in conn.execute(text("SELECT session_id FROM agent_executions"))}
    assert per_user == {expected[u]: n for u, n in USERS.items()}  # one stable pseudonym per user
    assert interactions == {expected[u]: n for u, n in USERS.items()}  # per-user analytics still add up
    assert usage == set(expected.values())
    assert all(s.startswith("u_") for s in sessions) and len(sessions) == sum(USERS.values())

    activity = httpx.get(
        f"{running.api}/api/admin/user-activity/{expected['alice.smith@example.com']}",
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert activity.status_code == 200, activity.text
    assert "support-bot" in activity.text

    everything = dump_everything(running.engine)
    for user in USERS:
        assert user.lower() not in everything
        assert f"{user}-session".lower() not in everything
    metrics = httpx.get(f"{running.api}/metrics").text
    assert not any(user in metrics or v in metrics for user, v in expected.items())  # never a user label


def test_without_a_key_personal_data_in_user_ids_is_hashed(
    sqlite_url: str, collector_factory: Callable[..., RunningCollector]
) -> None:
    running = collector_factory(sqlite_url)
    with sdk_provider(http_exporter(running.http_endpoint)) as tracer:
        for user in USERS:
            agent_trace(tracer, user=user)
    with running.engine.connect() as conn:
        stored = {r[0] for r in conn.execute(text("SELECT user_id FROM agent_executions"))}
    assert "user-42" in stored  # an opaque id is kept as sent
    hashed = stored - {"user-42"}
    assert len(hashed) == 2 and all(u.startswith("pii_") for u in hashed)
    assert "alice" not in dump_everything(running.engine)
