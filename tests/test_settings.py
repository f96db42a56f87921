"""Settings validated once at start-up: a bad value is a clear SettingsError, never a traceback."""

from __future__ import annotations

import os

import pytest

from agent_otel.settings import AUTO_WORKERS_MAX, SettingsError, load_settings


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:", "127.0.0.1:x", "127.0.0.1:²", ":4318"])
def test_listen_addresses_must_be_host_and_port(address: str) -> None:
    with pytest.raises(SettingsError, match="HOST:PORT"):
        load_settings({"otlp_http": address}, environ={})


def test_a_listen_address_is_host_and_port() -> None:
    settings = load_settings({"otlp_http": "0.0.0.0:4318", "otlp_grpc": "[::1]:4317"}, environ={})
    assert (settings.otlp_http.host, settings.otlp_http.port) == ("0.0.0.0", 4318)
    assert (settings.otlp_grpc.host, settings.otlp_grpc.port) == ("::1", 4317)


PG = "postgresql://postgres@127.0.0.1:5432/test"


def test_workers_unset_is_one_per_cpu_but_one_on_postgresql_and_one_on_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2})
    assert load_settings({"db_url": PG}, environ={}).worker_count == 2
    assert load_settings({}, environ={}).worker_count == 1  # the embedded SQLite default: one writer
    assert load_settings({"db_url": PG, "single_process": True}, environ={}).worker_count == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})  # this project's machine
    assert load_settings({"db_url": PG}, environ={}).worker_count == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(32)))
    assert load_settings({"db_url": PG}, environ={}).worker_count == AUTO_WORKERS_MAX
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {3})
    assert load_settings({"db_url": PG}, environ={}).worker_count == 1


def test_workers_set_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(32)))
    assert load_settings({"db_url": PG, "workers": 1}, environ={}).worker_count == 1
    assert load_settings({}, environ={"AGENT_OTEL_WORKERS": "3"}).worker_count == 3
    with pytest.raises(SettingsError, match="cannot have workers"):
        load_settings({"single_process": True, "workers": 2}, environ={})
