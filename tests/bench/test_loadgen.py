"""The load generator's two orders (bench/loadgen.py): the same traces, sent as live agents export
them (in the order they started) or shuffled over the hour."""

from __future__ import annotations

import time

import pytest
from bench.loadgen import WINDOW_S, build_bodies
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

SECOND = 10**9


def _roots(bodies: list[tuple[bytes, int]]) -> list[tuple[bytes, int, int]]:
    """(trace id, start, latest end in the trace) of each trace, in the order they are sent."""
    roots: list[tuple[bytes, int, int]] = []
    for body, _ in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
        ends: dict[bytes, int] = {}
        for span in spans:
            ends[span.trace_id] = max(ends.get(span.trace_id, 0), span.end_time_unix_nano)
        roots += [(s.trace_id, s.start_time_unix_nano, ends[s.trace_id]) for s in spans if not s.parent_span_id]
    return roots


def test_live_arrival_sends_the_same_traces_in_the_order_they_started() -> None:
    live, shuffled = _roots(build_bodies(4_000, 256, 5, "live")), _roots(build_bodies(4_000, 256, 5, "shuffled"))
    assert [trace for trace, _, _ in live] == [trace for trace, _, _ in shuffled]  # same traces, same order
    for order in (live, shuffled):
        starts = [start for _, start, _ in order]
        assert max(starts) - min(starts) > 0.9 * WINDOW_S * SECOND  # both cover the hour
        assert max(end for _, _, end in order) < time.time_ns()  # nothing ends in the future

    def late(starts: list[int]) -> int:
        """Traces that started over 10 s before one sent ahead of them."""
        latest, count = starts[0], 0
        for start in starts:
            count += start < latest - 10 * SECOND
            latest = max(latest, start)
        return count

    assert late([start for _, start, _ in live]) == 0
    assert late([start for _, start, _ in shuffled]) > len(shuffled) // 2


def test_an_unknown_arrival_is_refused() -> None:
    with pytest.raises(ValueError, match="arrival"):
        build_bodies(100, 50, 1, "sorted")
