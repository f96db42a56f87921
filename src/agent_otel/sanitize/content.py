"""Content is never stored: only its size in bytes and a type (``text``, ``json``, ...)."""

from __future__ import annotations

from typing import Final

TEXT: Final = "text"
JSON: Final = "json"
BINARY: Final = "binary"
NUMBER: Final = "number"
BOOLEAN: Final = "boolean"
EMPTY: Final = "empty"
FILE: Final = "file"

_MIME_TYPES: Final = {
    "application/json": JSON,
    "text/plain": TEXT,
    "application/octet-stream": BINARY,
}


def text_type(value: str) -> str:
    """``json`` for a string that holds a JSON object or array, else ``text``.

    Looks only at both ends (bounded slices): content can be megabytes and only its first and
    last non-blank characters decide."""
    head = value[:64].lstrip()
    if not head:
        if value.isspace() or not value:
            return EMPTY
        head = value.lstrip()
    tail = value[-64:].rstrip() or value.rstrip()
    first, last = head[0], tail[-1]
    if (first == "{" and last == "}") or (first == "[" and last == "]"):
        return JSON
    if head.startswith("data:"):
        return FILE
    return TEXT


def type_from_mime(mime: str) -> str:
    mime = mime.split(";", 1)[0].strip().lower()
    if mime in _MIME_TYPES:
        return _MIME_TYPES[mime]
    if mime.startswith("text/"):
        return TEXT
    if mime.endswith("+json"):
        return JSON
    if mime.startswith(("image/", "audio/", "video/")):
        return mime.split("/", 1)[0]
    return BINARY


def describe(value: object) -> tuple[int, str]:
    """Size in bytes and type of a content value (the value itself is then dropped)."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass")), text_type(value)
    if isinstance(value, bytes | bytearray):
        return len(value), BINARY
    if isinstance(value, bool):
        return 1, BOOLEAN
    if isinstance(value, int | float):
        return len(repr(value)), NUMBER
    if value is None:
        return 0, EMPTY
    return len(repr(value).encode("utf-8", "surrogatepass")), JSON
