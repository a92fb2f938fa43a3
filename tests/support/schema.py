"""Schemathesis against /api/schema/ in this process: the checks every response must pass, the examples'
settings, the WSGI app on the test's own connection, and a run over selected operations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES = settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None
)


@contextmanager
def wsgi_keeping_the_test_connection() -> Iterator:
    """The WSGI app, minus the per-request connection closing (as Django's test client does): the
    requests run on the test's own connection, inside its transaction."""
    from django.core.wsgi import get_wsgi_application

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def schemathesis_run(operation_ids: set[str] | None, authorization: str, *, exclude: set[str] = frozenset()):
    """Run every selected operation's generated cases; return the failures, described."""
    failures, ran = [], 0
    with wsgi_keeping_the_test_connection() as application:
        api = schemathesis.openapi.from_wsgi("/api/schema/", application)
        for result in api.get_all_operations():
            operation = result.ok()
            operation_id = operation.definition.raw.get("operationId")
            if (operation_ids is not None and operation_id not in operation_ids) or operation_id in exclude:
                continue

            @given(case=operation.as_strategy())
            @EXAMPLES
            def run(case) -> None:
                case.call_and_validate(headers={"Authorization": authorization}, checks=CHECKS)

            ran += 1
            try:
                run()
            except Exception as failure:
                failures.append(f"{operation_id}: {failure}")
    return failures, ran
