"""Fault knobs, set in process and over the admin endpoint, as the openai SDK experiences them."""

from __future__ import annotations

import contextlib
import json
import time

import openai
import pytest

from modelserver import ModelServer
from tests.modelserver.sim_helpers import ask, raw_request


def test_it_answers_500_in_openai_shape_for_an_error_fault(
    sim_server: ModelServer, sim_client: openai.OpenAI
) -> None:
    sim_server.set_faults("sim-nano", error_rate=1.0)

    with pytest.raises(openai.InternalServerError) as raised:
        ask(sim_client, "sim-nano", "hello")

    assert raised.value.status_code == 500
    assert raised.value.type == "server_error"
    assert raised.value.response.headers["x-request-id"].startswith("req_")


def test_it_answers_429_with_retry_after(sim_server: ModelServer, sim_client: openai.OpenAI) -> None:
    sim_server.set_faults("sim-mini", rate_limit_rate=1.0, retry_after=2)

    with pytest.raises(openai.RateLimitError) as raised:
        ask(sim_client, "sim-mini", "hello")

    assert raised.value.response.headers["retry-after"] == "2"
    assert raised.value.code == "rate_limit_exceeded"
    assert raised.value.type == "rate_limit_exceeded"


def test_it_keys_faults_by_deployment_so_a_fallback_stays_healthy(
    sim_server: ModelServer, sim_client: openai.OpenAI
) -> None:
    sim_server.set_faults("sim-nano", error_rate=1.0)

    assert ask(sim_client, "sim-nano-b", "hello").choices[0].message.content
    with pytest.raises(openai.InternalServerError):
        ask(sim_client, "sim-nano", "hello")


def test_it_fails_a_fraction_of_calls_reproducibly(
    sim_server: ModelServer, sim_client: openai.OpenAI
) -> None:
    sim_server.set_faults("sim-nano", error_rate=0.5)
    for _ in range(40):
        with contextlib.suppress(openai.InternalServerError):
            ask(sim_client, "sim-nano", "hello")

    counts = sim_server.stats()["by_model"]["sim-nano"]
    assert counts["200"] + counts["500"] == 40
    assert 8 <= counts["500"] <= 32


def test_it_holds_a_hung_request_until_the_client_gives_up(
    sim_server: ModelServer, sim_client: openai.OpenAI
) -> None:
    sim_server.set_faults("sim-flagship", hang=True)

    started = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        ask(sim_client, "sim-flagship", "hello", timeout=0.5)
    assert time.perf_counter() - started < 3

    deadline = time.monotonic() + 3
    while sim_server.stats()["by_model"].get("sim-flagship") != {"499": 1} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim_server.stats()["by_model"]["sim-flagship"] == {"499": 1}
    sim_server.set_faults("sim-flagship", hang=False)
    assert ask(sim_client, "sim-flagship", "hello", timeout=2).choices[0].message.content


def test_it_adds_latency_for_a_slow_fault(sim_server: ModelServer, sim_client: openai.OpenAI) -> None:
    sim_server.set_faults("sim-nano", slow_ms=300)

    started = time.perf_counter()
    ask(sim_client, "sim-nano", "hello")

    assert time.perf_counter() - started >= 0.3


def test_it_changes_faults_at_runtime_over_the_admin_endpoint(
    sim_server: ModelServer, sim_client: openai.OpenAI
) -> None:
    def post(knobs: dict) -> tuple[int, dict]:
        status, _, body = raw_request(sim_server, "POST", "/_admin/faults", json.dumps(knobs).encode())
        return status, body

    assert post({"model": "sim-flagship", "error_rate": 1.0})[0] == 200
    with pytest.raises(openai.InternalServerError):
        ask(sim_client, "sim-flagship", "hello")

    post({"model": "sim-flagship", "slow_ms": 5})  # a missing key keeps its value
    faults = raw_request(sim_server, "GET", "/_admin/faults")[2]["faults"]
    assert faults["sim-flagship"]["error_rate"] == 1.0
    assert faults["sim-flagship"]["slow_ms"] == 5

    post({"model": "sim-flagship", "reset": True})
    assert ask(sim_client, "sim-flagship", "hello").choices[0].message.content


def test_it_applies_a_wildcard_fault_to_every_model(
    sim_server: ModelServer, sim_client: openai.OpenAI
) -> None:
    raw_request(sim_server, "POST", "/_admin/faults", json.dumps({"model": "*", "error_rate": 1.0}).encode())

    for model in ("sim-nano", "sim-mini-eu", "sim-flagship"):
        with pytest.raises(openai.InternalServerError):
            ask(sim_client, model, "hello")

    raw_request(sim_server, "POST", "/_admin/faults", json.dumps({"model": "*", "reset": True}).encode())
    assert ask(sim_client, "sim-mini-eu", "hello").choices[0].message.content


@pytest.mark.parametrize(
    ("knobs", "status", "param"),
    [
        ({"model": "sim-nano", "error_rate": 2}, 400, "error_rate"),
        ({"model": "sim-nano", "hang": "yes"}, 400, "hang"),
        ({"model": "sim-nano", "explode": True}, 400, "explode"),
        ({"model": "gpt-9", "error_rate": 0.5}, 404, "model"),
        ({"error_rate": 0.5}, 400, "model"),
    ],
)
def test_it_rejects_bad_fault_settings(sim_server: ModelServer, knobs: dict, status: int, param: str) -> None:
    answered, _, body = raw_request(sim_server, "POST", "/_admin/faults", json.dumps(knobs).encode())

    assert answered == status
    assert body["error"]["param"] == param


def test_it_counts_calls_per_model_and_status(sim_server: ModelServer, sim_client: openai.OpenAI) -> None:
    ask(sim_client, "sim-nano", "one")
    ask(sim_client, "sim-nano", "two")
    with pytest.raises(openai.NotFoundError):
        ask(sim_client, "gpt-unknown", "three")

    stats = raw_request(sim_server, "GET", "/_admin/stats")[2]
    assert stats["by_model"]["sim-nano"] == {"200": 2}
    assert stats["by_status"] == {"200": 2, "404": 1}
    assert stats["total"] == 3

    raw_request(sim_server, "POST", "/_admin/stats", b'{"reset": true}')
    assert sim_server.stats()["total"] == 0
