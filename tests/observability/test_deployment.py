"""collector/: the OpenTelemetry Collector gateway, the compose file, the Dockerfile and the
systemd unit. No Docker engine or otelcol binary runs here, so they are checked statically:
they parse, every component they use is defined, every file they mount exists, and the ports
and names they use are the ones agent-otel, Prometheus and Grafana are configured with."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from agent_otel.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COLLECTOR = ROOT / "collector"


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _compose() -> dict[str, Any]:
    return dict(_yaml(COLLECTOR / "compose.yaml"))


def _serve_port(command: list[str], flag: str) -> int:
    address = command[command.index(flag) + 1]
    return int(address.rsplit(":", 1)[1])


# --- the gateway ---------------------------------------------------------------------------------


def test_gateway_pipelines_use_only_defined_components() -> None:
    config = _yaml(COLLECTOR / "otelcol" / "gateway.yaml")
    service = config["service"]
    assert set(service["extensions"]) <= set(config["extensions"])
    assert set(service["pipelines"]) == {"traces", "logs", "metrics"}
    for name, pipeline in service["pipelines"].items():
        assert set(pipeline["receivers"]) <= set(config["receivers"]), name
        assert set(pipeline["processors"]) <= set(config["processors"]), name
        assert set(pipeline["exporters"]) <= set(config["exporters"]), name
        assert pipeline["processors"][0] == "memory_limiter", f"{name}: memory_limiter must come first"
        assert "batch" in pipeline["processors"], name
        assert pipeline["exporters"] == (["loadbalancing/metrics"] if name == "metrics" else ["loadbalancing"]), name
    assert "health_check" in service["extensions"]
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}


def test_gateway_routes_each_trace_to_one_agent_otel_otlp_port() -> None:
    exporters = _yaml(COLLECTOR / "otelcol" / "gateway.yaml")["exporters"]
    assert exporters["loadbalancing"]["routing_key"] == "traceID"  # spans and logs of a trace together
    assert exporters["loadbalancing/metrics"]["routing_key"] == "service"  # a metric stream stays on one
    agent_otel = _compose()["services"]["agent-otel"]
    grpc_port = _serve_port(agent_otel["command"], "--otlp-grpc")
    assert grpc_port == 4317  # agent-otel's default OTLP/gRPC port (contract)
    for name, exporter in exporters.items():
        assert name.split("/")[0] == "loadbalancing"
        assert set(exporter["protocol"]) == {"otlp"}  # OTLP/gRPC to agent-otel
        assert exporter["protocol"]["otlp"]["retry_on_failure"]["enabled"] is True
        assert exporter["protocol"]["otlp"]["sending_queue"]["enabled"] is True
        resolver = exporter["resolver"]
        if "dns" in resolver:
            assert resolver["dns"]["hostname"] == "agent-otel", name
            assert int(resolver["dns"]["port"]) == grpc_port, name
        else:
            for host in resolver["static"]["hostnames"]:
                assert int(host.rsplit(":", 1)[1]) == grpc_port, name


# --- compose -----------------------------------------------------------------------------------


def test_compose_runs_the_whole_stack() -> None:
    services = _compose()["services"]
    assert {"postgres", "migrate", "agent-otel", "otelcol", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"


def test_compose_mounts_and_builds_files_that_exist() -> None:
    services = _compose()["services"]
    mounted = 0
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COLLECTOR / source).resolve().exists(), f"{name} mounts missing {source}"
                mounted += 1
        build = service.get("build")
        if build:
            context = (COLLECTOR / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), name
    assert mounted >= 6
    grafana = {
        v.split(":")[1]: (COLLECTOR / v.split(":")[0]).resolve()
        for v in services["grafana"]["volumes"]
        if v.startswith(".")
    }
    assert grafana["/etc/grafana/provisioning"] == ROOT / "grafana" / "provisioning"
    assert grafana["/var/lib/grafana/dashboards/agent-otel"] == ROOT / "grafana" / "dashboards"
    prometheus = {
        v.split(":")[1]: (COLLECTOR / v.split(":")[0]).resolve()
        for v in services["prometheus"]["volumes"]
        if v.startswith(".")
    }
    assert prometheus["/etc/prometheus/prometheus.yml"] == ROOT / "collector" / "prometheus" / "prometheus.yml"
    assert prometheus["/etc/prometheus/rules"] == ROOT / "collector" / "prometheus" / "rules"


def test_compose_commands_are_ones_agent_otel_accepts() -> None:
    services = _compose()["services"]
    parser = build_parser()
    serve = parser.parse_args(services["agent-otel"]["command"])
    assert serve.command == "serve"
    assert serve.no_migrate is True  # the migrate service migrates once, before the replicas start
    parser.parse_args(services["migrate"]["command"])
    assert services["agent-otel"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_prometheus_grafana_and_postgres_agree_on_names_and_ports() -> None:
    services = _compose()["services"]
    command = services["agent-otel"]["command"]
    scrape = _yaml(COLLECTOR / "prometheus" / "prometheus.yml")["scrape_configs"][0]
    assert scrape["job_name"] == "agent-otel"  # the alerts select job="agent-otel"
    sd = scrape["dns_sd_configs"][0]
    assert sd["names"] == ["agent-otel"] and sd["port"] == _serve_port(command, "--http") == 9464
    assert "--enable-feature=exemplar-storage" in services["prometheus"]["command"]

    datasources = {
        d["uid"]: d for d in _yaml(ROOT / "grafana" / "provisioning" / "datasources" / "agent-otel.yml")["datasources"]
    }
    prometheus_url = datasources["agent-otel-prometheus"]["url"]
    assert prometheus_url == "http://prometheus:9090"
    postgres = datasources["agent-otel-postgres"]
    assert postgres["url"] == "postgres:5432"
    init = (COLLECTOR / "postgres" / "init-agent-otel.sh").read_text()
    assert f"CREATE ROLE {postgres['user']} LOGIN" in init
    assert f"CREATE DATABASE {postgres['jsonData']['database']}" in init
    assert "GRANT SELECT ON TABLES TO agent_otel_reader" in init
    password_var = postgres["secureJsonData"]["password"].lstrip("$").strip("{}")
    assert password_var in services["grafana"]["environment"]
    assert password_var in services["postgres"]["environment"]
    db_url = services["agent-otel"]["environment"]["AGENT_OTEL_DB_URL"]
    assert re.match(r"postgresql://agent_otel:.+@postgres:5432/agent_otel$", db_url)


def test_dockerfile_copies_what_exists_and_serves_the_compose_ports() -> None:
    dockerfile = (COLLECTOR / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    assert re.search(r"EXPOSE 4317 4318 9464", dockerfile)
    cmd = re.search(r"^CMD \[(.*)\]", dockerfile, re.M)
    assert cmd is not None
    args = [a.strip().strip('"') for a in cmd[1].split(",")]
    parsed = build_parser().parse_args(args)
    assert parsed is not None and "0.0.0.0:4317" in args and "0.0.0.0:9464" in args


def test_the_image_builds_the_c_span_scanner() -> None:
    """Without setup.py and a C compiler, pip installs the package on the pure-Python span walk
    (``optional=True``), and the image would ingest on the slow path without a word."""
    dockerfile = (COLLECTOR / "Dockerfile").read_text()
    build = dockerfile.split("\nFROM ")[1]  # the build stage
    copied = [s for line in build.splitlines() if line.startswith("COPY") for s in line.split()[1:-1]]
    assert "setup.py" in copied
    assert re.search(r"apt-get install [^\n]*\bgcc\b", build)
    (install,) = [run for run in build.replace("\\\n", " ").splitlines() if "pip install" in run]
    assert 'python -c "import agent_otel.collector.pipeline._spanscan"' in install  # fails the build


def test_systemd_unit_runs_serve_and_drains_on_sigterm() -> None:
    unit = (COLLECTOR / "systemd" / "agent-otel.service").read_text()
    exec_start = re.search(r"^ExecStart=(\S+) (.*)$", unit, re.M)
    assert exec_start is not None and exec_start[1].endswith("/agent-otel")
    build_parser().parse_args(exec_start[2].split())
    assert "KillSignal=SIGTERM" in unit and "User=agent-otel" in unit
