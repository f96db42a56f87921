"""``agent-otel serve`` as users run it: a real process, port 0, announced ports, SIGTERM drain."""

from __future__ import annotations

import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import create_engine, text

from tests.otlp_helpers import encode, finished_spans

LISTENING = re.compile(r"^(otlp-grpc|otlp-http|http) listening on 127\.0\.0\.1:(\d+)$")


def start_serve(db_url: str, *extra: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent_otel",
            "serve",
            "--db",
            db_url,
            "--otlp-grpc",
            "127.0.0.1:0",
            "--otlp-http",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--log-level",
            "WARNING",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    ports: dict[str, int] = {}
    deadline = time.monotonic() + 60
    assert process.stdout is not None
    while len(ports) < 3 and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        match = LISTENING.match(line.strip())
        if match:
            ports[match.group(1)] = int(match.group(2))
    assert len(ports) == 3, f"no listening lines; stderr: {process.stderr.read() if process.stderr else ''}"
    return process, ports


def test_serve_announces_ports_and_drains_on_sigterm(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'serve.db'}"
    process, ports = start_serve(db_url)
    try:
        assert all(port > 0 for port in ports.values())
        assert httpx.get(f"http://127.0.0.1:{ports['http']}/healthz").text == "ok"
        ready = httpx.get(f"http://127.0.0.1:{ports['http']}/readyz")
        assert ready.status_code == 200 and ready.json()["database"] is True
        response = httpx.post(
            f"http://127.0.0.1:{ports['otlp-http']}/v1/traces",
            content=encode(finished_spans(5)),
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert response.status_code == 200
        metrics = httpx.get(f"http://127.0.0.1:{ports['http']}/metrics").text
        assert 'agent_executions_total{agent="support-bot-id",status="success"} 5.0' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)  # also closes the pipes
    assert process.returncode == 0, stderr
    engine = create_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM agent_executions")).scalar_one() == 5
    engine.dispose()


@pytest.mark.parametrize(("extra", "children"), [((), 1), (("--single-process",), 0)])
def test_serve_process_layout(tmp_path: Path, extra: tuple[str, ...], children: int) -> None:
    """By default a supervising process (API, rollup applier, jobs) and one ingest worker;
    ``--single-process`` does everything in one. Either way spans are stored and rolled up."""
    db_url = f"sqlite:///{tmp_path / 'serve.db'}"
    process, ports = start_serve(db_url, *extra)
    try:
        assert len(psutil.Process(process.pid).children()) == children
        response = httpx.post(
            f"http://127.0.0.1:{ports['otlp-http']}/v1/traces",
            content=encode(finished_spans(3)),
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert response.status_code == 200
        engine = create_engine(db_url)
        deadline = time.monotonic() + 30
        with engine.connect() as conn:
            while conn.execute(text("SELECT count(*) FROM rollup_outbox")).scalar_one() and time.monotonic() < deadline:
                time.sleep(0.1)
            executions = conn.execute(text("SELECT total_executions FROM agents")).scalar_one()
        engine.dispose()
        assert executions == 3  # the applier (the supervisor's, or the single process's) folded the delta in
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr


def test_serve_demo_reports_what_it_stored(tmp_path: Path) -> None:
    """The quick start's ``serve --demo``: the supervisor sends demo traffic through the plugin to
    its ingest worker and reports the rows the database holds."""
    db_url = f"sqlite:///{tmp_path / 'demo.db'}"
    process, _ports = start_serve(db_url, "--demo", "20")
    try:
        assert process.stdout is not None
        report = {}
        deadline = time.monotonic() + 120
        while "executions by status" not in report and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            key, _, value = line.strip().partition(": ")
            report[key] = value
        stored = dict(item.split("=") for item in report["rows stored"].split(", "))
        assert int(stored["agent_executions"]) >= 20 and int(stored["agent_steps"]) > 20
        statuses = dict(item.split("=") for item in report["executions by status"].split(", "))
        assert sum(int(n) for n in statuses.values()) == int(stored["agent_executions"])
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr


@pytest.mark.parametrize("extra", [(), ("--single-process",)])
def test_a_second_collector_on_the_same_ports_is_refused(tmp_path: Path, extra: tuple[str, ...]) -> None:
    """The workers share their ports through SO_REUSEPORT, which would also let a second
    collector started on the same ports (by mistake, or while an old one still drains) take half
    of the first one's connections without a word. It must refuse to start instead."""
    first, ports = start_serve(f"sqlite:///{tmp_path / 'first.db'}")
    try:
        for taken in ("--otlp-http", "--otlp-grpc", "--http"):
            addresses = {"--otlp-http": "127.0.0.1:0", "--otlp-grpc": "127.0.0.1:0", "--http": "127.0.0.1:0"}
            addresses[taken] = f"127.0.0.1:{ports[taken.removeprefix('--')]}"
            result = subprocess.run(
                [sys.executable, "-m", "agent_otel", "serve", "--db", f"sqlite:///{tmp_path / 'second.db'}"]
                + [part for option in addresses.items() for part in option]
                + list(extra),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 2, result.stderr
            assert f"cannot listen on {addresses[taken]}" in result.stderr
            assert "Traceback" not in result.stderr
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr


def test_serve_refuses_single_process_with_workers() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent_otel", "serve", "--single-process", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "single_process runs one process; it cannot have workers = 2" in result.stderr


def test_serve_refuses_an_invalid_configuration(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("ingest:\n  max_body_bytes: -5\nnot_a_setting: 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "agent_otel", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "invalid configuration" in result.stderr
    assert "ingest.max_body_bytes" in result.stderr and "not_a_setting" in result.stderr


def test_serving_processes_collect_garbage_less_often() -> None:
    """``serve`` tunes the garbage collector (issue 7): start-up objects frozen, and the young
    generation collected every 100,000 net allocations instead of CPython's 700."""
    code = (
        "import gc; from agent_otel.collector.service import tune_gc; before = gc.get_threshold()[0]; "
        "tune_gc(); print(before, gc.get_threshold()[0], gc.get_freeze_count())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    before, after, frozen = (int(x) for x in out)
    assert before == 700 and after == 100_000
    assert frozen > 10_000  # the imported modules' objects


# A process that frees an 8 MiB block (glibc raises its mmap threshold to that size), then
# allocates 400 KB (a request body): how many bytes of that allocation were mapped of their own.
_MAPPED_BODY = """
import ctypes, sys
class MallInfo2(ctypes.Structure):
    names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    _fields_ = [(n, ctypes.c_size_t) for n in names.split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "tuned":
    from agent_otel.collector.service import tune_allocator
    assert tune_allocator()
big = bytearray(8 << 20)
del big
before = libc.mallinfo2().hblkhd
body = bytearray(400_000)
print(libc.mallinfo2().hblkhd - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator")
def test_serving_processes_map_request_sized_blocks_of_their_own() -> None:
    """``serve`` fixes glibc's mmap threshold (issue 7's memory target): a request-sized block
    freed goes back to the system, even after a larger block raised glibc's dynamic threshold,
    which without it puts such blocks on the heap, where they fragment it."""
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_")}

    def mapped(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", _MAPPED_BODY, mode], capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr
        return int(run.stdout)

    assert mapped("default") == 0
    assert mapped("tuned") >= 400_000
    # an operator's own setting wins
    env["GLIBC_TUNABLES"] = "glibc.malloc.mmap_threshold=65536"
    code = "from agent_otel.collector.service import tune_allocator; print(tune_allocator())"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert run.stdout.strip() == "False"
