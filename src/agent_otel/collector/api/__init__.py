"""The HTTP API on ``--http``: /metrics, /healthz, /readyz, the admin API and /openapi.json."""
