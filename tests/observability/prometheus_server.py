"""A real Prometheus server for the tests: own port, own TSDB directory, killed afterwards.

The scrape job is the one in ``collector/prometheus/prometheus.yml`` (same job name, path and
scheme) with its service discovery replaced by the collector under test, a 1 s scrape and rule
evaluation interval, and the committed rule files loaded, so recording and alerting rules run in
the server exactly as in production.
"""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "collector" / "prometheus"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape_config(target: str, rule_files: list[Path]) -> dict[str, Any]:
    """The committed scrape config, pointed at ``target`` and sped up to 1 s."""
    committed = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    job = dict(committed["scrape_configs"][0])
    for key in [k for k in job if k.endswith("_sd_configs") or k == "static_configs"]:
        del job[key]
    job["static_configs"] = [{"targets": [target]}]
    job["scrape_interval"] = "1s"
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [job],
    }


class PromQLError(AssertionError):
    pass


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise PromQLError(f"{path} {params}: {response.status_code} {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        data = self.api("query", **params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=start, end=end, step=step)
        return list(data["result"])

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
        """Wait for an external process to reach a state (scrapes happen on its clock, not ours)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                if check():
                    return
            except (httpx.HTTPError, PromQLError):
                pass
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}; prometheus log: {self.log.read_text()[-2000:]}")


def finite_values(result: list[dict[str, Any]]) -> list[float]:
    values: list[float] = []
    for series in result:
        samples = series.get("values") or ([series["value"]] if "value" in series else [])
        values += [float(v) for _t, v in samples if math.isfinite(float(v))]
    return values


def as_vector(result: list[dict[str, Any]]) -> dict[frozenset[tuple[str, str]], float]:
    return {frozenset(s["metric"].items()): float(s["value"][1]) for s in result}


@contextmanager
def run_prometheus(binary: str, workdir: Path, target: str, rule_files: list[Path]) -> Iterator[Prometheus]:
    """Start Prometheus on a free 127.0.0.1 port; always terminate it, and kill it if it hangs."""
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(target, rule_files), sort_keys=False))
    log = workdir / "prometheus.log"
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--enable-feature=exemplar-storage",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        server.wait_for("prometheus ready", lambda: httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


def require_binary(name: str, missing: Callable[[str], None]) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"the {name} binary (Debian package prometheus)")
        raise AssertionError("unreachable")
    return path


def labels_of(series: Mapping[str, Any]) -> dict[str, str]:
    return dict(series["metric"])
