"""Fixtures of the analytics tests: demo traffic as OTLP request bodies (built once per module)."""

from __future__ import annotations

import random
from collections.abc import Iterable

import httpx
import pytest

from tests.analytics.traffic import demo_requests


@pytest.fixture(scope="module")
def traffic() -> list[bytes]:
    """About 120 executions of five agents and a dozen users over six hours, with feedback."""
    return demo_requests(120, seed=3)


def post_traces(endpoint: str, bodies: Iterable[bytes]) -> None:
    with httpx.Client(base_url=endpoint, timeout=30) as client:
        for body in bodies:
            response = client.post("/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"})
            assert response.status_code == 200, response.text


def with_retries(bodies: list[bytes], seed: int = 1) -> list[bytes]:
    """Every request once in a shuffled order, then a third of them again (client retries)."""
    rng = random.Random(seed)
    shuffled = list(bodies)
    rng.shuffle(shuffled)
    return shuffled + rng.sample(bodies, len(bodies) // 3)
