"""PostgreSQL stopped and started under load, on a private cluster (never the shared server).

While the database is down the collector answers 503 / UNAVAILABLE with Retry-After, reports
itself not ready, does not crash, and reconnects by itself when the server is back. The real
OpenTelemetry SDK exporters (OTLP/HTTP and OTLP/gRPC, batch span processors) retry on their own
and, once the database is back, everything they sent is stored exactly once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from sqlalchemy import Engine, text

from tests.conftest import IN_CI, RunningCollector
from tests.durability.support import PrivateCluster, Traffic, private_cluster, rollup_problems, wait_until
from tests.otlp_helpers import agent_trace, grpc_exporter, http_exporter

PROTOBUF = {"Content-Type": "application/x-protobuf"}


class LedgerExporter(SpanExporter):
    """Records which spans an exporter delivered (SUCCESS) and which it gave up on."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.delivered: set[tuple[str, str]] = set()
        self.failed: set[tuple[str, str]] = set()
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        keys = {(format(s.context.trace_id, "032x"), format(s.context.span_id, "016x")) for s in spans if s.context}
        with self.lock:
            (self.delivered if result is SpanExportResult.SUCCESS else self.failed).update(keys)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    reason = PrivateCluster.available()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"the database outage test needs a private PostgreSQL cluster: {reason}", pytrace=False)
        pytest.skip(reason)
    with private_cluster() as made:
        yield made


def _stored_spans(engine: Engine) -> dict[tuple[str, str], int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT trace_id, span_id, count(*) FROM ("
                " SELECT trace_id, span_id FROM agent_executions UNION ALL"
                " SELECT trace_id, span_id FROM agent_steps) s GROUP BY trace_id, span_id"
            )
        )
        return {(r[0], r[1]): r[2] for r in rows}


@pytest.mark.timeout(300)
def test_database_restart_under_load_loses_nothing(
    cluster: PrivateCluster, collector_factory: Callable[..., RunningCollector]
) -> None:
    # The SDK exporters make 6 attempts, waiting Retry-After between them: a 3 s delay gives them a
    # 15 s window, wider than the outage plus the writer's reconnection probe (backs off to 5 s).
    running = collector_factory(cluster.url, **{"ingest.retry_after_seconds": 3})
    exporters = [
        LedgerExporter(http_exporter(running.http_endpoint, timeout=60)),
        LedgerExporter(grpc_exporter(running.grpc_endpoint, timeout=60)),
    ]
    stop = threading.Event()
    created: list[int] = [0, 0]

    def produce(index: int, exporter: LedgerExporter) -> None:
        provider = TracerProvider(resource=Resource.create({"service.name": f"outage-{index}"}))
        provider.add_span_processor(
            BatchSpanProcessor(exporter, max_queue_size=50_000, schedule_delay_millis=100, max_export_batch_size=200)
        )
        tracer = provider.get_tracer("outage")
        while not stop.is_set():
            agent_trace(tracer, agent=f"agent-{index}", user=f"user-{created[index] % 7}")
            created[index] += 1
            stop.wait(0.01)
        provider.force_flush(120_000)
        provider.shutdown()

    producers = [threading.Thread(target=produce, args=(i, e), daemon=True) for i, e in enumerate(exporters)]
    for producer in producers:
        producer.start()
    assert wait_until(lambda: all(e.delivered for e in exporters), timeout=30)

    cluster.stop("fast")  # the server goes away under load
    outage: dict[str, Any] = {}
    body, _ = Traffic("probe").request(1)
    assert wait_until(
        lambda: httpx.post(f"{running.http_endpoint}/v1/traces", content=body, headers=PROTOBUF).status_code == 503,
        timeout=20,
    )
    response = httpx.post(f"{running.http_endpoint}/v1/traces", content=body, headers=PROTOBUF)
    outage["http"] = (response.status_code, response.headers.get("retry-after"))
    with grpc.insecure_channel(running.grpc_endpoint) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")(body, timeout=10)
        outage["grpc"] = caught.value.code()
        outage["grpc_retry_info"] = "google.rpc.retryinfo-bin" in dict(caught.value.trailing_metadata() or ())
    outage["ready"] = httpx.get(f"{running.api}/readyz").status_code
    outage["alive"] = httpx.get(f"{running.api}/healthz").status_code
    time.sleep(1.5)  # keep it down a little longer while the SDKs keep retrying
    cluster.start()

    # it reconnects by itself: ready again, new requests accepted
    assert wait_until(lambda: httpx.get(f"{running.api}/readyz").status_code == 200, timeout=60)
    stop.wait(2.0)
    stop.set()
    for producer in producers:
        producer.join(180)
    assert running.thread.is_alive()  # it never crashed

    assert outage == {
        "http": (503, "3"),
        "grpc": grpc.StatusCode.UNAVAILABLE,
        "grpc_retry_info": True,
        "ready": 503,
        "alive": 200,
    }
    delivered = set().union(*(e.delivered for e in exporters))
    failed = set().union(*(e.failed for e in exporters))
    assert failed == set(), f"{len(failed)} spans the SDK exporters gave up on"
    assert sum(created) * 4 == len(delivered)  # every span of every trace was delivered
    stored = _stored_spans(running.engine)
    assert [k for k in delivered if k not in stored] == []
    assert [k for k, n in stored.items() if n != 1] == []
    assert rollup_problems(running.engine) == []
