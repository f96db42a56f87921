"""Fixtures of the observability tests: the prometheus and promtool binaries.

Like PostgreSQL in the root conftest, a missing binary skips the test locally and fails it under
CI=true (CI installs Debian's prometheus package in .ci/run).
"""

from __future__ import annotations

import pytest

from tests.conftest import IN_CI
from tests.observability.prometheus_server import require_binary


def missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true", pytrace=False)
    pytest.skip(f"{what} is not available")


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_binary("promtool", missing)


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return require_binary("prometheus", missing)
