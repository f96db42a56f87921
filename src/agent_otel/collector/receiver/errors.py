"""Receiver errors and the one table that maps them to HTTP statuses and gRPC codes.

    ReceiverError
    ├── PermanentError            the client must not retry the same request
    │   ├── MalformedRequest      400 / INVALID_ARGUMENT
    │   ├── UnsupportedMediaType  415 (HTTP only)
    │   ├── PayloadTooLarge       413 / RESOURCE_EXHAUSTED (no retry info: do not retry)
    │   ├── Unauthenticated       401 / UNAUTHENTICATED
    │   └── PermissionDenied      403 / PERMISSION_DENIED
    └── RetryableError            the client should retry after ``retry_after`` seconds
        ├── InternalError         500 / INTERNAL (a bug; never echoes request data)
        ├── Overloaded            429 / RESOURCE_EXHAUSTED with RetryInfo
        └── StorageUnavailable    503 / UNAVAILABLE with RetryInfo

Messages are written for the client and never echo request content.
"""

from __future__ import annotations

from typing import ClassVar

import grpc


class ReceiverError(Exception):
    http_status: ClassVar[int] = 500
    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    reason: ClassVar[str] = "internal"

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class PermanentError(ReceiverError):
    pass


class RetryableError(ReceiverError):
    pass


class MalformedRequest(PermanentError):
    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "malformed"


class UnsupportedMediaType(PermanentError):
    http_status = 415
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "unsupported_media_type"


class PayloadTooLarge(PermanentError):
    http_status = 413
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "too_large"


class Unauthenticated(PermanentError):
    http_status = 401
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    reason = "unauthenticated"


class PermissionDenied(PermanentError):
    http_status = 403
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    reason = "permission_denied"


class InternalError(RetryableError):
    """An unexpected failure inside the collector (a bug): 500 / INTERNAL; clients may retry."""

    http_status = 500
    grpc_code = grpc.StatusCode.INTERNAL
    reason = "internal"


class Overloaded(RetryableError):
    http_status = 429
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "overloaded"


class StorageUnavailable(RetryableError):
    http_status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE
    reason = "storage_unavailable"
