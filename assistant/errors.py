"""Project error types.

Contract: every error the platform raises on purpose is an `AssistantError` subclass carrying an HTTP status, an
OpenAI-style error `type`, and optionally the offending `param`. The server maps them to OpenAI-shaped JSON bodies in
one exception handler; the CLI prints their message and exits non-zero. Messages say what to fix.
"""

from __future__ import annotations


class AssistantError(Exception):
    """Base class: a message a user can act on, with the HTTP status it maps to."""

    status_code = 500
    error_type = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidRequestError(AssistantError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationError(AssistantError):
    status_code = 401
    error_type = "authentication_error"


class PermissionDeniedError(AssistantError):
    status_code = 403
    error_type = "permission_error"


class NotFoundError(AssistantError):
    status_code = 404
    error_type = "not_found_error"


class ConflictError(AssistantError):
    status_code = 409
    error_type = "conflict_error"


class PayloadTooLargeError(AssistantError):
    status_code = 413
    error_type = "invalid_request_error"


class UnsupportedMediaError(AssistantError):
    status_code = 415
    error_type = "invalid_request_error"


class UnprocessableError(AssistantError):
    status_code = 422
    error_type = "invalid_request_error"


class ServiceUnavailableError(AssistantError):
    status_code = 503
    error_type = "service_unavailable"


class ConfigError(AssistantError):
    """A setting is wrong or a configured resource is missing (fix the config, not the request)."""

    status_code = 500
    error_type = "configuration_error"


class ModelNotAvailableError(ConfigError):
    """A configured model cannot be found locally."""


class MissingExtraError(ConfigError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed. "
            f"Install it with: pip install -e '.[{extra}]'"
        )


class RateLimitedError(AssistantError):
    """Too much work in flight: the client should retry after `retry_after` seconds (sent as `Retry-After`)."""

    status_code = 429
    error_type = "requests"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, code="rate_limit_exceeded")
        self.retry_after = retry_after
