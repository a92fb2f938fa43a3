"""Errors as problem details (RFC 9457) for the REST API, and as OpenAI error objects for `/v1/`.

Every error names what is wrong and, where it is a field, which one: `errors: [{field, message}]`, the
field written as a path into the request (`messages[0].role`, `constraints.min_tier`, header names as
`header:Idempotency-Key`, query parameters as `query:page_size`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import kombu.exceptions
import redis.exceptions
from django import db
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:arbiter:problem:"

TITLES = {
    400: "Invalid request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    410: "Gone",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Request cannot be processed",
    429: "Too many requests",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Timed out",
}


class Problem(exceptions.APIException):
    """An API error with a stable code, a status and optional per-field errors."""

    def __init__(
        self,
        detail: str,
        *,
        status_code: int = status.HTTP_400_BAD_REQUEST,
        code: str = "invalid_request",
        errors: Sequence[Mapping[str, Any]] = (),
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail=detail, code=code)
        self.status_code = status_code
        self.problem_code = code
        self.errors = [dict(error) for error in errors]
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


class PayloadTooLarge(Problem):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the request body is larger than the limit of {limit} bytes",
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            code="payload_too_large",
            extra={"limit_bytes": limit},
        )


# What the request needs and cannot reach: an outage, not a bug in the request or in Arbiter. Each is
# answered 503 with Retry-After (the OpenAI SDKs retry it; a retry without an Idempotency-Key finds the
# job a first try made: routing.services.implicit_idempotency), never Django's HTML 500.
OUTAGES: dict[type[BaseException], str] = {
    db.OperationalError: "the database",
    db.InterfaceError: "the database",
    redis.exceptions.ConnectionError: "Redis",
    redis.exceptions.TimeoutError: "Redis",
    kombu.exceptions.OperationalError: "the message broker",
}
OUTAGE_RETRY_AFTER_S = 5


def outage_of(exc: BaseException | None) -> str | None:
    """What is down, when `exc` is an outage (in its chain, as kombu and Django wrap the driver's error)."""
    seen = 0
    while exc is not None and seen < 5:
        for kind, what in OUTAGES.items():
            if isinstance(exc, kind):
                return what
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


class ServiceUnavailable(Problem):
    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} cannot be reached just now; try again in {OUTAGE_RETRY_AFTER_S} s (a retry with the same "
            "Idempotency-Key, or the same request without one, finds any job this request made)",
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            code="service_unavailable",
            headers={"Retry-After": str(OUTAGE_RETRY_AFTER_S)},
        )


def field_problem(field: str | None, message: str, *, status_code: int = 400, code: str = "invalid") -> Problem:
    return Problem(message, status_code=status_code, code=code, errors=[{"field": field, "message": message}])


def flatten_errors(detail: Any, path: str = "") -> list[dict[str, Any]]:
    """DRF's nested error structure as a flat list of {field, message} with the path of each field."""
    if isinstance(detail, Mapping):
        flat = []
        for key, value in detail.items():
            if key in ("non_field_errors", "__all__"):
                flat.extend(flatten_errors(value, path))
            else:
                child = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))
                flat.extend(flatten_errors(value, child))
        return flat
    if isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            return [{"field": path or None, "message": str(item)} for item in detail]
        flat = []
        for index, item in enumerate(detail):
            if item in ({}, [], None):
                continue
            flat.extend(flatten_errors(item, f"{path}[{index}]"))
        return flat
    return [{"field": path or None, "message": str(detail)}]


def _normalise(exc: Exception) -> Exception:
    what = outage_of(exc)
    if what is not None:
        logger.warning("503: %s is unavailable: %r", what, exc)
        return ServiceUnavailable(what)
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied()
    return exc


def _code(exc: exceptions.APIException) -> str:
    if isinstance(exc, Problem):
        return exc.problem_code
    if isinstance(exc, exceptions.ValidationError):
        return "validation_error"
    codes = exc.get_codes()
    return codes if isinstance(codes, str) else "error"


def _headers(exc: exceptions.APIException) -> dict[str, str]:
    headers = dict(getattr(exc, "headers", None) or {})
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(max(1, int(exc.wait + 0.999)))
    return headers


def problem_body(exc: exceptions.APIException) -> dict[str, Any]:
    status_code = exc.status_code
    code = _code(exc)
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten_errors(exc.detail)
        detail = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors[:5])
    elif isinstance(exc, Problem):
        errors, detail = exc.errors, str(exc.detail)
    else:
        errors, detail = [], str(exc.detail)
    body = {
        "type": PROBLEM_TYPE_PREFIX + code.replace("_", "-"),
        "title": TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail or TITLES.get(status_code, "Error"),
        "code": code,
        "errors": errors,
    }
    if isinstance(exc, Problem):
        body.update(exc.extra)
    return body


def openai_body(exc: exceptions.APIException) -> dict[str, Any]:
    """The shape the OpenAI SDKs parse: {"error": {"message", "type", "param", "code"}}."""
    problem = problem_body(exc)
    status_code = problem["status"]
    kind = {
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        409: "conflict_error",
        429: "rate_limit_error",
    }.get(status_code, "invalid_request_error" if status_code < 500 else "server_error")
    first_field = next((e["field"] for e in problem["errors"] if e.get("field")), None)
    code = {"not_authenticated": "invalid_api_key", "authentication_failed": "invalid_api_key"}.get(
        problem["code"], problem["code"]
    )
    error = {"message": problem["detail"], "type": kind, "param": first_field, "code": code}
    if isinstance(exc, Problem):
        error.update(exc.extra)
    return {"error": error}


# The OpenAI SDKs retry 408, 409, 429 and every 5xx unless told `x-should-retry: false`. Only these are
# worth a retry: a rate limit or an unavailable limiter (with Retry-After), and a wait that timed out (the
# retry finds the same job: routing.services.implicit_idempotency). A held (409), blocked or failed job,
# a refused or invalid request answers the same again, and a retry would only add load.
OPENAI_RETRYABLE = frozenset({429, 503, 504})
SHOULD_RETRY_HEADER = "x-should-retry"


def problem_exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response | None:
    """DRF's exception handler: problem details, or OpenAI's error shape for views that speak it."""
    exc = _normalise(exc)
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: let Django log it and answer 500
    view = context.get("view")
    if getattr(view, "error_style", "problem") == "openai":
        headers = _headers(exc)
        if exc.status_code not in OPENAI_RETRYABLE:
            headers[SHOULD_RETRY_HEADER] = "false"
        return Response(openai_body(exc), status=exc.status_code, headers=headers)
    response = Response(
        problem_body(exc), status=exc.status_code, headers=_headers(exc), content_type=PROBLEM_MEDIA_TYPE
    )
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """The root URLconf's handler500, for what escaped every view and middleware: an outage answers 503
    with Retry-After; on `/api/` and `/v1/` always in the error shape the client parses, never HTML."""
    what = outage_of(sys.exc_info()[1])
    problem: exceptions.APIException = (
        ServiceUnavailable(what) if what else exceptions.APIException("Internal server error")
    )
    headers = _headers(problem)
    if request.path.startswith("/v1/"):
        return JsonResponse(openai_body(problem), status=problem.status_code, headers=headers)
    if request.path.startswith("/api/"):
        return JsonResponse(
            problem_body(problem), status=problem.status_code, headers=headers, content_type=PROBLEM_MEDIA_TYPE
        )
    # A page: standalone HTML, which needs neither the database nor a signed-in user to render.
    template = "503.html" if what else "500.html"
    return HttpResponse(
        loader.render_to_string(template, {"what": what, "retry_after": OUTAGE_RETRY_AFTER_S}),
        status=problem.status_code,
        headers=headers,
    )
