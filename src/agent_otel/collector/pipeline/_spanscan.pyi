from collections.abc import Callable
from typing import Any

def scan(
    body: bytes,
    kinds: dict[str, Any],
    classify: Callable[[str], Any],
    text_type: Callable[[str], str],
    /,
) -> list[tuple[Any, ...]] | None: ...
