"""Fuzzing the OTLP decoding and the whole pure pipeline (decode -> normalize -> assemble -> rows).

Every generated input must either be refused with a ``ReceiverError`` (a clear 4xx) or become rows
that the database can store (see ``harness.check_row``); nothing else may be raised.

The default suite runs a short pass. The long pass (a million inputs and more) is kept out of it:

    AGENT_OTEL_FUZZ_INPUTS=1000000 .venv/bin/pytest -m slow tests/hostile/test_fuzz_pipeline.py -p no:cacheprovider -s

It prints how many inputs each strategy fed through the pipeline; docs/durability.md has a run.
Hypothesis builds the structure (about 50 ms per structured example); each example then also feeds
cheap seeded byte mutations of itself (``VARIANTS``), so a million inputs take minutes, not hours.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from agent_otel.collector.receiver.decode import JSON, PROTOBUF
from agent_otel.collector.receiver.errors import ReceiverError
from tests.hostile.harness import run_pipeline
from tests.hostile.strategies import log_requests, mutated_bodies, otlp_json, seed_bodies, trace_requests

SEEDS = seed_bodies()
FED: Counter[str] = Counter()
LONG_TOTAL = int(os.environ.get("AGENT_OTEL_FUZZ_INPUTS", "1000000"))
# shares of the long run per strategy; each structured example feeds two inputs (protobuf and JSON)
SHARES = {"traces": 0.3, "logs": 0.2, "mutations": 0.3, "bytes": 0.2}
# inputs fed per generated example: the example itself (protobuf, and JSON for structured ones)
# plus seeded random byte mutations of its protobuf encoding
VARIANTS = {"traces": 40, "logs": 40, "mutations": 10, "bytes": 4}


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=examples < 1000,  # the short run is reproducible; the long one explores
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )


def feed(name: str, signal: str, body: bytes, encoding: str) -> None:
    FED[name] += 1
    result = run_pipeline(signal, body, encoding)
    if isinstance(result, ReceiverError):
        assert 400 <= result.http_status < 500, result
        assert len(result.message) < 300


def mutate(body: bytes, rng: random.Random) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        if not data:
            return bytes(data)
        at = rng.randrange(len(data))
        op = rng.randrange(4)
        if op == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[at:at] = rng.randbytes(rng.randint(1, 6))
        elif op == 2:
            del data[at : at + rng.randint(1, 12)]
        else:
            data[at] = rng.choice((0x00, 0x7F, 0x80, 0xFF, 0x0A, 0x12, 0x1A, 0x22))
    return bytes(data)


def feed_variants(name: str, signal: str, body: bytes, count: int) -> None:
    rng = random.Random(body)
    for _ in range(count):
        feed(name, signal, mutate(body, rng), PROTOBUF)


def _structured(kind: str) -> None:
    strategy = trace_requests() if kind == "traces" else log_requests()

    @given(strategy)
    def check(request: object) -> None:
        body = request.SerializeToString()  # type: ignore[attr-defined]
        feed(kind, kind, body, PROTOBUF)
        feed(kind, kind, otlp_json(request), JSON)
        feed_variants(kind, kind, body, VARIANTS[kind] - 2)

    return check  # type: ignore[return-value]


def _mutations() -> None:
    @given(mutated_bodies(SEEDS))
    def check(signal_body: tuple[str, bytes]) -> None:
        signal, body = signal_body
        feed("mutations", signal, body, PROTOBUF)
        feed_variants("mutations", signal, body, VARIANTS["mutations"] - 1)

    return check  # type: ignore[return-value]


def _bytes() -> None:
    @given(st.sampled_from(["traces", "logs", "metrics"]), st.binary(max_size=300), st.booleans())
    def check(signal: str, body: bytes, as_json: bool) -> None:
        feed("bytes", signal, body, JSON if as_json else PROTOBUF)
        feed_variants("bytes", signal, body, VARIANTS["bytes"] - 1)

    return check  # type: ignore[return-value]


STRATEGIES = {"traces": _structured, "logs": _structured, "mutations": _mutations, "bytes": _bytes}


def _run(name: str, examples: int) -> None:
    factory = STRATEGIES[name]
    check = factory(name) if name in ("traces", "logs") else factory()  # type: ignore[call-arg]
    _settings(examples)(check)()  # type: ignore[misc,operator]


@pytest.fixture(autouse=True)
def _report() -> Iterator[None]:
    FED.clear()
    yield
    print(f"\nfuzz inputs fed through the pipeline: {dict(FED)} total {sum(FED.values())}")


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_fuzz_short(name: str) -> None:
    _run(name, 40)
    assert FED[name] >= 40 * VARIANTS[name]


def test_every_captured_request_survives_every_single_byte_flip() -> None:
    """Deterministic: each real request with one bit flipped at 300 random positions."""
    rng = random.Random(1)
    for signal, body in SEEDS:
        for _ in range(300 // len(SEEDS) + 1):
            data = bytearray(body)
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            feed("flips", signal, bytes(data), PROTOBUF)
    assert FED["flips"] >= 300


@pytest.mark.slow
@pytest.mark.timeout(6 * 3600)
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_fuzz_long(name: str) -> None:
    examples = max(1, int(LONG_TOTAL * SHARES[name] / VARIANTS[name]))
    # many short hypothesis runs, each with a fresh random seed: one long run keeps every choice
    # sequence it tried in memory (gigabytes after thousands of large examples)
    chunk = 500
    for start in range(0, examples, chunk):
        _run(name, min(chunk, examples - start))
    assert FED[name] >= examples * VARIANTS[name] * 0.99  # hypothesis may stop a few short
