"""OpenAI's error shape on every `/v1/*` path, `models.retrieve`, and a provider's 4xx kept a 4xx — with
the real `openai` SDK against a live Arbiter."""

from __future__ import annotations

import uuid

import openai
import pytest
from django.test import Client

from audit.models import LedgerEvent
from routing.models import Job, JobStatus
from tests.support.live import live_arbiter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def arbiter(django_db_setup, django_db_blocker, model_server):
    with django_db_blocker.unblock():
        yield from live_arbiter(model_server.base_url)


@pytest.fixture
def sdk(arbiter, live_db) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{arbiter.url}/v1", api_key=arbiter.key, timeout=60)  # default retries


def error_of(response) -> dict:
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body["error"]) >= {"message", "type", "code", "param"}
    return body["error"]


@pytest.mark.django_db
def test_an_unknown_v1_path_is_a_json_404_in_openai_form_for_any_method(client):
    # Also the django_db test that makes pytest-django create the test database for this module.
    for method, path in [("get", "/v1/foo"), ("post", "/v1/responses/x/y"), ("delete", "/v1/"), ("put", "/v1/a%2Fb")]:
        response = getattr(client, method)(path)
        assert response.status_code == 404, path
        error = error_of(response)
        assert error["type"] == "not_found_error" and error["code"] == "unknown_url"
        assert response["x-should-retry"] == "false"


def test_a_method_an_endpoint_does_not_serve_is_a_json_405(arbiter, live_db):
    response = Client().get("/v1/chat/completions", HTTP_AUTHORIZATION=f"Bearer {arbiter.key}")
    assert response.status_code == 405
    assert error_of(response)["type"] == "invalid_request_error"


def test_the_sdk_parses_an_unknown_path_into_not_found(sdk):
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.get("/no-such-thing", cast_to=object)
    assert raised.value.code == "unknown_url"
    assert "/v1/no-such-thing" in raised.value.message


def test_models_retrieve_auto_and_a_policy(sdk, arbiter):
    auto = sdk.models.retrieve("auto")
    assert auto.id == "auto" and auto.object == "model" and auto.owned_by == "arbiter"
    named = f"arbiter/{arbiter.setup.policy.name}"
    assert sdk.models.retrieve(named).id == named
    assert {model.id for model in sdk.models.list()} >= {"auto", named}


def test_models_retrieve_an_unknown_model_is_a_404_model_not_found(sdk):
    for name in ("gpt-4o", "arbiter/no-such-policy", "arbiter/"):
        with pytest.raises(openai.NotFoundError) as raised:
            sdk.models.retrieve(name)
        assert raised.value.code == "model_not_found"
        assert raised.value.param == "model"


def test_a_request_the_provider_refuses_is_a_400_with_the_providers_message(sdk, arbiter):
    content = f"[task:classification] [difficulty:lots] refused by the model {uuid.uuid4().hex}"
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": content}],
            extra_headers={"x-arbiter-task-type": "classification"},
        )
    assert raised.value.code == "upstream_invalid_request"
    assert "[difficulty:...] needs a number between 0 and 1, got 'lots'" in raised.value.message
    assert raised.value.response.headers["x-should-retry"] == "false"
    job = Job.objects.get(pk=raised.value.body["job_id"])
    assert job.status == JobStatus.FAILED
    assert Job.objects.filter(application=arbiter.setup.application, request__messages__0__content=content).count() == 1
    failed = LedgerEvent.objects.get(subject_job=str(job.pk), event_type="job.failed")
    assert failed.body["upstream_status"] == 400


def test_a_provider_that_is_down_is_still_a_502(sdk, arbiter, model_server):
    models = [deployment.model for deployment in arbiter.setup.deployments.values()]
    for model in models:
        model_server.set_faults(model, error_rate=1.0)
    try:
        with pytest.raises(openai.InternalServerError) as raised:
            sdk.chat.completions.create(
                model="auto",
                messages=[{"role": "user", "content": f"[task:classification] down {uuid.uuid4().hex}"}],
            )
    finally:
        for model in models:
            model_server.reset_faults(model)
    assert raised.value.status_code == 502 and raised.value.code == "job_failed"
    assert raised.value.response.headers["x-should-retry"] == "false"  # the same failed job again
