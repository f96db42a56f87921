"""Analytics (issue 4): rollups kept inside every write transaction, their recomputation, reads.

- ``sketch``: the mergeable duration sketch (1% relative error) behind p50/p95/p99.
- ``periods``: hour/day/week/month arithmetic (UTC, weeks from Monday) and range tiling.
- ``state``: what one row of each rollup table holds and how two of them merge (exactly).
- ``aggregate``: pure aggregation of executions, late-step changes and feedback; ``recompute``.
- ``store``: rollup reads and writes per dialect (locks, set-based statements).
- ``hook``: the ``ChangeHook`` that keeps every rollup current.
- ``rebuild``: ``agent-otel rollups rebuild``; ``commands``: the CLI groups (rollups, retention).
- ``queries``: the reads behind the admin API; ``maintenance``: planner statistics on PostgreSQL.
- ``unpriced``: the counter of LLM calls without a price.
"""
