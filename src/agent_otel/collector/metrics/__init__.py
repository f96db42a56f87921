"""Prometheus metrics: the collector's own health and the metrics derived from spans."""
