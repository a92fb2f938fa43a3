"""A policy admin cannot make the workers send a server secret (DATABASE_URL, SECRET_KEY, the ledger's
signing key…) as a bearer token, nor send prompts to cloud metadata: only `ARBITER_PROVIDER_KEY_*` or
allow-listed variables, and URLs with the webhooks' address rules; checked on write and at call time."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings

from audit.models import LedgerEvent
from routing.calls import TierUnavailable, call_tier, endpoint_for
from routing.models import ModelDeployment
from routing.providers import ProviderError, chat
from tests.factories import DeploymentFactory

pytestmark = pytest.mark.django_db

SERVER_SECRETS = ["DATABASE_URL", "SECRET_KEY", "ARBITER_LEDGER_SIGNING_KEY", "REDIS_URL", "OPENAI_API_KEY", "PATH"]
REQUEST = {"messages": [{"role": "user", "content": "hello"}]}


def deployment_body(**fields) -> dict:
    return {
        "name": "byo-provider",
        "tier": "nano",
        "base_url": "http://127.0.0.1:8100/v1",
        "model": "m",
        "price_in_per_mtok": "0",
        "price_out_per_mtok": "0",
        **fields,
    }


def refused_field(response) -> tuple[str, str]:
    assert response.status_code == 400, response.json()
    error = response.json()["errors"][0]
    return error["field"], error["message"]


class Recorder(BaseHTTPRequestHandler):
    """A provider that writes down the bearer token it was sent (and fails the call)."""

    tokens: list[str] = []

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Recorder.tokens.append(self.headers.get("Authorization", ""))
        body = json.dumps({"error": {"message": "recorded", "type": "server_error"}}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def recording_provider() -> Iterator[str]:
    Recorder.tokens = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("variable", SERVER_SECRETS)
def test_a_deployment_cannot_name_a_server_secret(admin, variable):
    response = admin.client.post("/api/v1/admin/deployments", deployment_body(api_key_env=variable), format="json")
    field, message = refused_field(response)
    assert field == "api_key_env" and "ARBITER_PROVIDER_KEY_" in message and variable in message
    assert not ModelDeployment.objects.filter(name="byo-provider").exists()


def test_an_existing_deployment_cannot_be_pointed_at_a_server_secret(admin):
    name = admin.setup.deployments["nano"].name
    response = admin.client.patch(f"/api/v1/admin/deployments/{name}", {"api_key_env": "SECRET_KEY"}, format="json")
    assert refused_field(response)[0] == "api_key_env"
    assert ModelDeployment.objects.get(name=name).api_key_env == ""


def test_a_prefixed_variable_or_an_allow_listed_one_is_accepted(admin):
    prefixed = deployment_body(name="byo-a", api_key_env="ARBITER_PROVIDER_KEY_OPENAI")
    assert admin.client.post("/api/v1/admin/deployments", prefixed, format="json").status_code == 201
    listed = deployment_body(name="byo-b", api_key_env="OPENAI_API_KEY")
    with override_settings(ARBITER_PROVIDER_KEY_ENV_ALLOWLIST=frozenset({"OPENAI_API_KEY"})):
        assert admin.client.post("/api/v1/admin/deployments", listed, format="json").status_code == 201


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
        "file:///etc/passwd",
    ],
)
def test_a_deployment_cannot_point_at_cloud_metadata(admin, url):
    response = admin.client.post("/api/v1/admin/deployments", deployment_body(base_url=url), format="json")
    assert refused_field(response)[0] == "base_url"


def test_loopback_provider_urls_are_refused_where_private_urls_are_not_allowed(admin):
    with override_settings(ARBITER_ALLOW_PRIVATE_PROVIDER_URLS=False):
        response = admin.client.post("/api/v1/admin/deployments", deployment_body(), format="json")
    field, message = refused_field(response)
    assert field == "base_url" and "ARBITER_ALLOW_PRIVATE_PROVIDER_URLS" in message
    # In development the local model server on 127.0.0.1 is a deployment like any other.
    assert admin.client.post("/api/v1/admin/deployments", deployment_body(), format="json").status_code == 201


def test_moving_a_deployment_is_its_own_ledger_event_with_names_never_values(admin, monkeypatch):
    monkeypatch.setenv("ARBITER_PROVIDER_KEY_NEW", "sk-the-secret-value")
    name = admin.setup.deployments["nano"].name
    response = admin.client.patch(
        f"/api/v1/admin/deployments/{name}",
        {"base_url": "http://127.0.0.1:8200/v1", "api_key_env": "ARBITER_PROVIDER_KEY_NEW"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    event = LedgerEvent.objects.filter(event_type="deployment.endpoint_changed").latest("id")
    assert event.body["before"] == {"base_url": "http://127.0.0.1:9/v1", "api_key_env": ""}
    assert event.body["after"] == {"base_url": "http://127.0.0.1:8200/v1", "api_key_env": "ARBITER_PROVIDER_KEY_NEW"}
    assert "sk-the-secret-value" not in json.dumps(event.body)


def test_a_row_from_before_the_rule_never_sends_the_secret(recording_provider, monkeypatch):
    monkeypatch.setenv("ARBITER_PROVIDER_KEY_GOOD", "sk-provider-key")
    good = DeploymentFactory(base_url=recording_provider, api_key_env="ARBITER_PROVIDER_KEY_GOOD")
    with pytest.raises(ProviderError):
        chat(endpoint_for(good), REQUEST)
    assert Recorder.tokens == ["Bearer sk-provider-key"]  # the recorder sees what a provider would

    Recorder.tokens = []
    # Written straight to the table, as a row from before the rule (or a hand-edited one) would be.
    bad = DeploymentFactory(base_url=recording_provider)
    ModelDeployment.objects.filter(pk=bad.pk).update(api_key_env="SECRET_KEY")
    bad.refresh_from_db()
    with pytest.raises(TierUnavailable) as failed:
        call_tier("nano", [bad], REQUEST)
    assert Recorder.tokens == []  # nothing was sent at all
    attempt = failed.value.attempts[0]
    assert attempt.outcome == "refused" and "'SECRET_KEY' may not be used as a provider key" in attempt.error


def test_a_row_pointing_at_metadata_is_never_called():
    bad = DeploymentFactory(base_url="http://127.0.0.1:8100/v1")
    ModelDeployment.objects.filter(pk=bad.pk).update(base_url="http://169.254.169.254/v1")
    bad.refresh_from_db()
    with pytest.raises(TierUnavailable) as failed:
        call_tier("nano", [bad], REQUEST)
    assert "never allowed" in failed.value.attempts[0].error
