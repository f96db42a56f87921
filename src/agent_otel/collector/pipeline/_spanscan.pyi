from collections.abc import Callable
from datetime import datetime
from typing import Any

def scan(
    body: bytes,
    kinds: dict[str, Any],
    classify: Callable[[str], Any],
    text_type: Callable[[str], str],
    recipe: Any = None,
    normalizer: Any = None,
    tenant_id: str = ...,
    now_ns: int = ...,
    max_future_ns: int = ...,
    max_age_ns: int = ...,
    counts: Any = None,
    /,
) -> list[Any] | None: ...
def recipe(config: dict[str, Any], /) -> Any: ...
def utc_datetime(ns: int, /) -> datetime: ...
def sqlite_ts(value: datetime, /) -> str: ...
