"""Settings validated once at start-up: a bad value is a clear SettingsError, never a traceback."""

from __future__ import annotations

import pytest

from agent_otel.settings import SettingsError, load_settings


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:", "127.0.0.1:x", "127.0.0.1:²", ":4318"])
def test_listen_addresses_must_be_host_and_port(address: str) -> None:
    with pytest.raises(SettingsError, match="HOST:PORT"):
        load_settings({"otlp_http": address}, environ={})


def test_a_listen_address_is_host_and_port() -> None:
    settings = load_settings({"otlp_http": "0.0.0.0:4318", "otlp_grpc": "[::1]:4317"}, environ={})
    assert (settings.otlp_http.host, settings.otlp_http.port) == ("0.0.0.0", 4318)
    assert (settings.otlp_grpc.host, settings.otlp_grpc.port) == ("::1", 4317)
