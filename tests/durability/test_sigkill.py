"""SIGKILL under load: what got a success response is stored, exactly once, and the rollups
still equal their recomputation from the raw rows.

``agent-otel serve`` runs as a real subprocess. Three senders keep a ledger of the executions
whose request was acknowledged (200) and retry refused ones with the same bytes; the collector
is killed with SIGKILL and restarted on the same ports several times while they send.
"""

from __future__ import annotations

import itertools
import random
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.durability.support import (
    Ledger,
    Sender,
    ServeProcess,
    Traffic,
    check_exactly_once,
    rollup_problems,
    wait_until,
)

KILLS = 4


@pytest.mark.timeout(600)
def test_acknowledged_executions_survive_sigkill(
    db_url: str, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    serve = ServeProcess(db_url, tmp_path / "serve.log")
    ledger = Ledger()
    stop = threading.Event()
    rng = random.Random(6)
    try:
        serve.start()
        traffic = Traffic(uuid.uuid4().hex, executions_per_request=5)
        senders = [Sender(serve.http_endpoint, traffic, ledger, stop) for _ in range(3)]
        for sender in senders:
            sender.start()
        acked_before_kill = []
        for _ in range(KILLS):
            before = len(ledger.acknowledged)
            # load flows through this incarnation (a busy machine may need a while), then a kill
            assert wait_until(lambda: len(ledger.acknowledged) > before, timeout=60), serve.tail()  # noqa: B023
            stop.wait(rng.uniform(0.5, 2.0))
            acked_before_kill.append(len(ledger.acknowledged))
            serve.kill()  # mid-load: requests are being decoded, queued and committed
            stop.wait(0.3)  # senders see refused connections meanwhile
            serve.start()
        stop.wait(1.5)
        stop.set()
        for sender in senders:
            sender.join(60)
        assert serve.terminate() == 0, serve.tail()
    finally:
        stop.set()
        serve.close()

    # the load really ran across every restart, and some requests hit a dead collector
    assert all(b > a for a, b in itertools.pairwise(acked_before_kill)), acked_before_kill
    assert len(ledger.acknowledged) > acked_before_kill[-1]
    refused = sum(n for outcome, n in ledger.outcomes.items() if outcome != "200")
    assert refused > 0, ledger.outcomes
    engine = engine_for(db_url)
    figures = check_exactly_once(engine, ledger.acknowledged)
    assert figures["stored"] >= figures["acknowledged"] > 0
    assert rollup_problems(engine) == []
