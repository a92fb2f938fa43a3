"""Schemathesis against /api/schema/: generated requests for every operation, with a valid key; no
server error and no response outside the schema (status, content type, body, headers)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
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

from tests.support.personas import key_for

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


@pytest.fixture
def full_key(owner) -> str:
    return key_for(owner.application, "jobs:read", "jobs:write", "platform:admin")


def test_the_schema_documents_every_operation(client):
    document = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operations = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    assert {
        "jobs_submit",
        "jobs_list",
        "jobs_retrieve",
        "jobs_cancel",
        "jobs_events",
        "openai_chat_completions",
        "openai_models",
        "admin_policy_versions_create",
        "admin_keys_create",
    } <= operations
    assert document["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


def test_swagger_ui_is_served_from_local_static_files(client):
    page = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in page
    assert "cdn" not in page.lower() and "https://" not in page


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


@pytest.mark.django_db
def test_every_operation_conforms_to_the_schema(settings, full_key):
    settings.ARBITER_RATE_LIMIT_PER_MINUTE = 0
    # Chat completions wait for a worker: their run is in test_openai_sdk.py, against live workers.
    failures, ran = schemathesis_run(None, f"Bearer {full_key}", exclude={"openai_chat_completions"})
    assert ran >= 24
    assert not failures, "\n\n".join(failures)
