"""Bad input gets a clear 4xx naming what is wrong, and changes nothing: the job count stays put."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from tests.support.personas import Tenant

pytestmark = pytest.mark.django_db


def body(tenant: Tenant, **fields) -> dict:
    return {
        "task_type": "classification",
        "messages": [{"role": "user", "content": "Which queue?"}],
        "policy": tenant.setup.policy.name,
        **fields,
    }


def post_raw(tenant: Tenant, raw: bytes | str, content_type: str = "application/json", **extra):
    data = raw.encode() if isinstance(raw, str) else raw
    return tenant.client.generic("POST", "/api/v1/jobs", data, content_type=content_type, **extra)


def assert_refused(tenant: Tenant, response, status: int, *, field: str | None = None, says: str = "") -> dict:
    problem = response.json()
    assert response.status_code == status, problem
    assert response["Content-Type"] == "application/problem+json"
    assert problem["status"] == status and problem["detail"]
    if field is not None:
        assert field in [error["field"] for error in problem["errors"]], problem
    if says:
        assert says in json.dumps(problem), problem
    assert tenant.job_count() == 0
    return problem


def test_a_body_over_the_size_limit_is_413(owner):
    with override_settings(ARBITER_API_MAX_BODY_BYTES=2048):
        response = owner.submit("x" * 5000)
    assert_refused(owner, response, 413, says="2048 bytes")


def test_a_declared_length_over_the_limit_is_413_before_reading(owner):
    with override_settings(ARBITER_API_MAX_BODY_BYTES=2048):
        response = post_raw(owner, json.dumps(body(owner)), CONTENT_LENGTH="99999999")
    assert_refused(owner, response, 413)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_a_wrong_content_type_is_415(owner, content_type):
    response = post_raw(owner, json.dumps(body(owner)), content_type=content_type)
    assert_refused(owner, response, 415, says=content_type)


def test_a_charset_other_than_utf8_is_415(owner):
    response = post_raw(
        owner, json.dumps(body(owner)).encode("utf-16"), content_type="application/json; charset=utf-16"
    )
    assert_refused(owner, response, 415, says="UTF-8")


def test_malformed_json_is_400(owner):
    problem = assert_refused(owner, post_raw(owner, '{"task_type": "classification", '), 400)
    assert problem["code"] == "malformed_json"


def test_json_nested_thousands_deep_is_400(owner):
    deep = '{"task_type": "classification", "metadata": {"a": ' + "[" * 5000 + "]" * 5000 + "}}"
    problem = assert_refused(owner, post_raw(owner, deep), 400)
    assert problem["code"] == "too_deep"


def test_json_nested_deeper_than_the_limit_is_400_with_the_path(owner):
    nested: dict = {}
    cursor = nested
    for _ in range(40):
        cursor["a"] = {}
        cursor = cursor["a"]
    problem = assert_refused(owner, owner.submit(metadata=nested), 400, says="nested more than")
    assert problem["errors"][0]["field"].startswith("metadata.a.a")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"messages": [{"role": "user", "content": "hi\u0000there"}]}, "messages[0].content"),
        ({"labels": {"re\u0000gion": "eu"}}, "labels.re\u0000gion"),
        ({"metadata": {"deep": [{"k\u0000": 1}]}}, "metadata.deep[0].k\u0000"),
        ({"metadata": {"note": "\u0000"}}, "metadata.note"),
    ],
    ids=["value", "label-key", "nested-key", "metadata-value"],
)
def test_a_nul_character_anywhere_is_400_never_500(owner, fields, field):
    problem = assert_refused(owner, owner.submit(**fields), 400, field=field)
    assert problem["code"] == "nul_character"


def test_a_nul_character_in_the_idempotency_key_is_400(owner):
    response = owner.client.post("/api/v1/jobs", body(owner), format="json", HTTP_IDEMPOTENCY_KEY="a\x00b")
    assert_refused(owner, response, 400, field="header:Idempotency-Key")


def test_a_lone_surrogate_is_400(owner):
    raw = json.dumps(body(owner)).replace("Which queue?", "\\ud800 broken")
    problem = assert_refused(owner, post_raw(owner, raw), 400, field="messages[0].content")
    assert problem["code"] == "invalid_unicode"


def test_invalid_utf8_is_400(owner):
    raw = json.dumps(body(owner)).encode().replace(b"Which queue?", b"Which \xff\xfe queue?")
    problem = assert_refused(owner, post_raw(owner, raw), 400, says="not valid UTF-8")
    assert problem["code"] == "invalid_utf8"


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", str(2**64), str(-(2**63) - 1), "1" * 5000])
def test_numbers_that_are_not_finite_or_beyond_64_bits_are_400(owner, number):
    raw = json.dumps(body(owner)).replace('"policy"', f'"constraints": {{"latency_budget_ms": {number}}}, "policy"')
    problem = assert_refused(owner, post_raw(owner, raw), 400)
    assert problem["code"] == "invalid_number"


def test_a_duplicate_key_is_400(owner):
    raw = json.dumps(body(owner)).replace('"policy"', '"task_type": "reasoning", "policy"')
    assert_refused(owner, post_raw(owner, raw), 400, says="appears twice")


def test_an_unknown_task_type_is_400_listing_the_allowed_ones(owner):
    assert_refused(owner, owner.submit(task_type="poetry"), 400, field="task_type", says="classification, extraction")


def test_an_unknown_tier_is_400_listing_the_allowed_ones(owner):
    response = owner.submit(constraints={"min_tier": "huge"})
    assert_refused(owner, response, 400, field="constraints.min_tier", says="nano, mini, flagship")


def test_min_tier_above_max_tier_is_400(owner):
    response = owner.submit(constraints={"min_tier": "flagship", "max_tier": "nano"})
    assert_refused(owner, response, 400, field="constraints.min_tier")


@pytest.mark.parametrize("field", ["status", "approved_by", "application", "request_sha256", "sha256", "result"])
def test_fields_a_client_may_not_set_are_refused(owner, field):
    response = owner.submit(**{field: "completed"})
    assert_refused(owner, response, 400, field=field, says="set by Arbiter")


def test_an_unknown_field_is_refused_with_the_allowed_ones(owner):
    assert_refused(owner, owner.submit(priority=1), 400, field="priority", says="allowed: task_type")


def test_a_tools_schema_that_is_not_json_schema_is_400(owner):
    tools = [{"type": "function", "function": {"name": "refund", "parameters": {"type": "nonsense"}}}]
    assert_refused(
        owner, owner.submit(tools=tools), 400, field="tools[0].function.parameters", says="not a valid JSON Schema"
    )


def test_a_response_format_schema_that_is_not_json_schema_is_400(owner):
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"properties": 3}}}
    assert_refused(
        owner, owner.submit(response_format=response_format), 400, field="response_format.json_schema.schema"
    )


@pytest.mark.parametrize(
    "url", ["http://10.0.0.5/hook", "http://192.168.1.1/hook", "http://[fd00::1]/hook", "http://100.64.0.1/hook"]
)
def test_a_callback_url_to_a_private_address_is_400(owner, url):
    assert_refused(owner, owner.submit(callback_url=url), 400, field="callback_url", says="private")


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data", "http://[fe80::1]/hook"])
def test_a_callback_url_to_link_local_is_always_400(owner, url):
    with override_settings(ARBITER_WEBHOOK_ALLOW_PRIVATE=True):
        assert_refused(owner, owner.submit(callback_url=url), 400, field="callback_url", says="link-local")


def test_a_loopback_callback_is_refused_where_loopback_is_not_allowed(owner):
    with override_settings(ARBITER_WEBHOOK_ALLOW_LOOPBACK=False):
        assert_refused(
            owner, owner.submit(callback_url="http://localhost:8000/hook"), 400, field="callback_url", says="loopback"
        )


def test_a_callback_url_that_is_not_http_is_400(owner):
    assert_refused(owner, owner.submit(callback_url="file:///etc/passwd"), 400, field="callback_url")


@pytest.mark.parametrize(
    "key", ["", "k" * 10_000, "has space", "caf\u00e9"], ids=["empty", "10000", "space", "non-ascii"]
)
def test_a_bad_idempotency_key_is_400(owner, key):
    response = owner.client.post("/api/v1/jobs", body(owner), format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert_refused(owner, response, 400, field="header:Idempotency-Key")


def test_an_empty_body_is_400_naming_the_required_fields(owner):
    response = post_raw(owner, b"")
    problem = assert_refused(owner, response, 400)
    assert {"task_type", "messages"} <= {error["field"] for error in problem["errors"]}


def test_a_body_that_is_not_an_object_is_400(owner):
    assert_refused(owner, post_raw(owner, "[1, 2]"), 400)


def test_a_message_with_a_wrong_role_is_400(owner):
    response = owner.submit(messages=[{"role": "wizard", "content": "hi"}])
    assert_refused(owner, response, 400, field="messages[0].role", says="allowed: system")


def test_a_page_size_of_a_billion_is_400(owner):
    response = owner.client.get("/api/v1/jobs", {"page_size": 1_000_000_000})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "query:page_size"


@pytest.mark.parametrize("cursor", ["garbage", "cD0yMDI0", "cD1ub3QtYS1kYXRl", "%00"])
def test_a_tampered_cursor_is_400(owner, cursor):
    response = owner.client.get(f"/api/v1/jobs?cursor={cursor}")
    assert response.status_code == 400, response.json()
    assert response.json()["errors"][0]["field"] == "query:cursor"


def test_an_unknown_list_filter_value_is_400(owner):
    response = owner.client.get("/api/v1/jobs", {"status": "done"})
    assert response.status_code == 400
    assert "allowed: queued" in response.json()["detail"]
