"""A policy admin cannot make the workers send a server secret (DATABASE_URL, SECRET_KEY, the ledger's
signing key…) as a bearer token, nor send prompts to cloud metadata: only `ARBITER_PROVIDER_KEY_*` or
allow-listed variables, and URLs with the webhooks' address rules; checked on write and at call time."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings

from audit.models import LedgerEvent
from routing.execute import addresses, providers
from routing.execute.calls import TierUnavailable, call_tier, endpoint_for
from routing.execute.providers import Endpoint, ProviderError, base_url_check, chat
from routing.models import ModelDeployment
from tests.support.factories import DeploymentFactory

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


@pytest.mark.parametrize("url", ["http://[::1/v1", "http://:80/v1"])
def test_a_row_with_a_malformed_url_is_refused_not_a_crash(url):
    bad = DeploymentFactory(base_url="http://127.0.0.1:8100/v1")
    ModelDeployment.objects.filter(pk=bad.pk).update(base_url=url)
    bad.refresh_from_db()
    with pytest.raises(TierUnavailable) as failed:
        call_tier("nano", [bad], REQUEST)
    [attempt] = failed.value.attempts
    assert attempt.outcome == "refused" and "refused" in attempt.error


# --- The connection goes where the check said, and nowhere else (redirects, DNS rebinding) -------------

COMPLETION = {
    "id": "chatcmpl-x",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "answer"}}],
}


class _Server:
    """A loopback HTTP server on a free port of `host` that records each POST and answers with `reply(handler)`."""

    def __init__(self, reply, host: str = "127.0.0.1"):
        self.received: list[tuple[str, str, bytes]] = []  # (Host header, path, body)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.received.append((self.headers.get("Host", ""), self.path, body))
                reply(self)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _answer(handler, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def internal() -> Iterator[_Server]:
    """Stands for 127.0.0.1 / the metadata service: what a redirect or a rebinding would reach."""
    server = _Server(lambda handler: _answer(handler, 200, json.dumps(COMPLETION).encode()))
    yield server
    server.close()


@pytest.fixture
def redirector(internal) -> Iterator[_Server]:
    """A provider host that answers every call with 307 to the internal server."""
    location = f"http://127.0.0.1:{internal.port}/internal/v1/chat/completions"
    server = _Server(lambda handler: _answer(handler, 307, headers={"Location": location}), host="127.0.0.2")
    yield server
    server.close()


def _resolve_as(monkeypatch, answers: dict[str, str]) -> None:
    """Makes the address check (routing.execute.addresses) resolve these names to these addresses, as a DNS
    server under an attacker's control would; nothing else in the process sees the answers."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real(host, port, *args, **kwargs)

    shim = types.SimpleNamespace(getaddrinfo=getaddrinfo, gaierror=socket.gaierror, SOCK_STREAM=socket.SOCK_STREAM)
    monkeypatch.setattr(addresses, "socket", shim)


def test_a_deployment_url_cannot_redirect_the_worker_to_an_internal_address(
    settings, monkeypatch, internal, redirector
):
    # Production rules. The redirector stands for a public provider host: it listens on 127.0.0.2, which
    # the address rules are told is public (so nothing leaves the machine); its 307 points at 127.0.0.1,
    # which they refuse.
    settings.ARBITER_ALLOW_PRIVATE_PROVIDER_URLS = False
    real_reach = addresses.address_reach
    public = ipaddress.ip_address("127.0.0.2")
    monkeypatch.setattr(
        addresses, "address_reach", lambda address: addresses.Reach.PUBLIC if address == public else real_reach(address)
    )
    base_url = f"http://127.0.0.2:{redirector.port}/v1"
    base_url_check(base_url)
    with pytest.raises(addresses.UnsafeAddress, match="loopback"):
        base_url_check(f"http://127.0.0.1:{internal.port}/v1")
    endpoint = Endpoint("evil", base_url, "m", "", 5.0)
    with pytest.raises(ProviderError) as failed:
        chat(endpoint, {"messages": [{"role": "user", "content": "tenant secret prompt"}]})
    assert failed.value.status == 307 and not failed.value.retryable
    assert len(redirector.received) == 1
    assert internal.received == []  # not one tenant's prompt reached the refused address


def test_a_redirect_is_a_provider_error_even_in_development(settings, internal, redirector):
    # Loopback is allowed here (the local model server), but a redirect is still never followed.
    settings.ARBITER_ALLOW_PRIVATE_PROVIDER_URLS = True
    endpoint = Endpoint("moved", f"http://127.0.0.2:{redirector.port}/v1", "m", "", 5.0)
    with pytest.raises(ProviderError) as failed:
        chat(endpoint, REQUEST)
    assert failed.value.status == 307 and not failed.value.retryable
    assert "never follows a provider's redirects" in str(failed.value)
    assert f"127.0.0.1:{internal.port}/internal" in str(failed.value)  # says where it wanted to go
    assert internal.received == [] and len(redirector.received) == 1


def test_a_redirecting_deployment_is_tried_once_and_the_step_says_why(settings, internal, redirector):
    settings.ARBITER_ALLOW_PRIVATE_PROVIDER_URLS = True
    deployment = DeploymentFactory(base_url=f"http://127.0.0.2:{redirector.port}/v1")
    with pytest.raises(TierUnavailable) as failed:
        call_tier("nano", [deployment], REQUEST)
    [attempt] = failed.value.attempts  # no retry storm against a redirect
    assert attempt.outcome == "refused" and attempt.status == 307
    assert "redirect" in attempt.error
    assert len(redirector.received) == 1 and internal.received == []


def test_the_worker_connects_to_the_checked_address_not_a_second_resolution(settings, monkeypatch, internal):
    # `provider.invalid` cannot resolve for anyone but the check: a call that arrives proves the
    # connection went to the checked address, with the URL's host kept as the Host header.
    settings.ARBITER_ALLOW_PRIVATE_PROVIDER_URLS = True
    _resolve_as(monkeypatch, {"provider.invalid": "127.0.0.1"})
    endpoint = Endpoint("pinned", f"http://provider.invalid:{internal.port}/v1", "m", "", 5.0)
    response = chat(endpoint, REQUEST)
    assert response.completion.choices[0].message.content == "answer"
    assert [host for host, _, _ in internal.received] == [f"provider.invalid:{internal.port}"]


def test_a_host_that_rebinds_to_metadata_is_refused_at_the_next_check(settings, monkeypatch, internal):
    settings.ARBITER_ALLOW_PRIVATE_PROVIDER_URLS = True
    _resolve_as(monkeypatch, {"rebinding.invalid": "127.0.0.1"})
    endpoint = Endpoint("rebinding", f"http://rebinding.invalid:{internal.port}/v1", "m", "", 5.0)
    chat(endpoint, REQUEST)
    assert len(internal.received) == 1

    _resolve_as(monkeypatch, {"rebinding.invalid": "169.254.169.254"})
    chat(endpoint, REQUEST)  # within the pin's lifetime: the checked address is still the one used
    assert len(internal.received) == 2
    monkeypatch.setattr(providers, "PIN_TTL_S", 0.0)  # the pin expires: resolved and checked again
    with pytest.raises(ProviderError) as failed:
        chat(endpoint, REQUEST)
    assert not failed.value.retryable and "never allowed" in str(failed.value)
    assert len(internal.received) == 2  # nothing was sent after the rebinding


def test_the_client_and_its_checked_addresses_are_reused_between_calls(settings, monkeypatch, internal):
    settings.ARBITER_ALLOW_PRIVATE_PROVIDER_URLS = True
    lookups = []
    real = socket.getaddrinfo

    def counting(host, port, *args, **kwargs):
        lookups.append(host)
        return real(host, port, *args, **kwargs)

    shim = types.SimpleNamespace(getaddrinfo=counting, gaierror=socket.gaierror, SOCK_STREAM=socket.SOCK_STREAM)
    monkeypatch.setattr(addresses, "socket", shim)
    endpoint = Endpoint("hot", f"http://127.0.0.1:{internal.port}/v1", "m", "", 5.0)
    for _ in range(5):
        chat(endpoint, REQUEST)
    assert len(internal.received) == 5 and lookups == ["127.0.0.1"]  # one check per minute, not per call


def _certificate_authority(tmp_path, server_name: str) -> tuple[str, str, str]:
    """A private CA and a server certificate for `server_name`: (CA file, certificate file, key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def issue(subject, issuer, public_key, signing_key, *, ca: bool, san: str | None = None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            ).add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = issue("Arbiter test CA", "Arbiter test CA", ca_key.public_key(), ca_key, ca=True)
    server = issue(server_name, "Arbiter test CA", server_key.public_key(), ca_key, ca=False, san=server_name)
    files = (tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key")
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return tuple(str(path) for path in files)


@pytest.mark.parametrize(("certificate_for", "verifies"), [("provider.invalid", True), ("other.invalid", False)])
def test_a_pinned_https_connection_still_verifies_the_urls_host(
    settings, monkeypatch, tmp_path, internal, certificate_for, verifies
):
    # The connection goes to the checked address, but TLS is for the URL's host: the certificate must
    # name `provider.invalid` (a private CA stands in for the public ones).
    settings.ARBITER_ALLOW_PRIVATE_PROVIDER_URLS = True
    ca_file, cert_file, key_file = _certificate_authority(tmp_path, certificate_for)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    internal.httpd.socket = server_context.wrap_socket(internal.httpd.socket, server_side=True)
    monkeypatch.setattr(providers.httpx2, "create_ssl_context", lambda **_: ssl.create_default_context(cafile=ca_file))
    _resolve_as(monkeypatch, {"provider.invalid": "127.0.0.1"})
    endpoint = Endpoint(f"tls-{certificate_for}", f"https://provider.invalid:{internal.port}/v1", "m", "", 5.0)
    if verifies:
        assert chat(endpoint, REQUEST).completion.choices[0].message.content == "answer"
        assert [host for host, _, _ in internal.received] == [f"provider.invalid:{internal.port}"]
    else:
        with pytest.raises(ProviderError, match="connection failed"):
            chat(endpoint, REQUEST)
        assert internal.received == []  # a certificate for another name: nothing is sent
