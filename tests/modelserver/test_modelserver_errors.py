"""Every bad request gets a clear 4xx in OpenAI's error shape, never a traceback."""

from __future__ import annotations

import http.client
import json
import socket

import openai
import pytest

from modelserver import ModelServer
from tests.modelserver.sim_helpers import ask, raw_request

MESSAGES = [{"role": "user", "content": "hello"}]


def assert_openai_error(body: dict) -> dict:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]


def test_it_rejects_malformed_json(sim_server: ModelServer) -> None:
    status, _, body = raw_request(sim_server, "POST", "/v1/chat/completions", b'{"model": "sim-nano",')

    assert status == 400
    assert assert_openai_error(body)["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": "sim-nano"}, "messages"),
        ({"model": "sim-nano", "messages": []}, "messages"),
        ({"model": "sim-nano", "messages": [{"content": "no role"}]}, "messages[0]"),
        ({"model": "sim-nano", "messages": MESSAGES, "n": 2}, "n"),
        ({"model": "sim-nano", "messages": MESSAGES, "stream": "yes"}, "stream"),
        ({"model": "sim-nano", "messages": MESSAGES, "stream_options": {"include_usage": True}}, "stream_options"),
        ({"model": "sim-nano", "messages": MESSAGES, "top_logprobs": 3}, "top_logprobs"),
        ({"model": "sim-nano", "messages": MESSAGES, "response_format": {"type": "yaml"}}, "response_format"),
        ({"model": "sim-nano", "messages": [{"role": "user", "content": "[difficulty:7]"}]}, "messages"),
        ({"model": "sim-nano", "messages": [{"role": "user", "content": "[task:poetry]"}]}, "messages"),
        ({"model": "sim-nano", "messages": [{"role": "user", "content": "[call:x {bad}]"}]}, "messages"),
        ([1, 2], "body"),
    ],
)
def test_it_names_the_bad_parameter(sim_server: ModelServer, payload: object, param: str) -> None:
    status, _, body = raw_request(sim_server, "POST", "/v1/chat/completions", json.dumps(payload).encode())

    assert status == 400
    assert assert_openai_error(body)["param"] == param


def test_it_answers_404_model_not_found_for_an_unknown_model(sim_client: openai.OpenAI) -> None:
    for model in ("gpt-4o", "sim-huge", "sim-nano-"):
        with pytest.raises(openai.NotFoundError) as raised:
            ask(sim_client, model, "hello")
        assert raised.value.code == "model_not_found"


def test_it_answers_404_for_an_unknown_path_and_405_for_a_wrong_method(sim_server: ModelServer) -> None:
    missing_status, _, missing = raw_request(sim_server, "GET", "/v1/embeddings")
    wrong_status, wrong_headers, wrong = raw_request(sim_server, "GET", "/v1/chat/completions")
    delete_status, _, _ = raw_request(sim_server, "DELETE", "/healthz")

    assert missing_status == 404
    assert_openai_error(missing)
    assert wrong_status == 405
    assert assert_openai_error(wrong)["code"] == "method_not_allowed"
    assert wrong_headers["Allow"] == "POST"
    assert delete_status == 405


def test_it_keeps_a_connection_usable_after_errors(sim_server: ModelServer) -> None:
    connection = http.client.HTTPConnection(sim_server.host, sim_server.port, timeout=5)
    good = json.dumps({"model": "sim-nano", "messages": MESSAGES})
    statuses = []
    for method, body in [
        ("POST", "{"),
        ("GET", None),
        ("POST", good),
        ("POST", '{"model": 1}'),
        ("POST", good),
    ]:
        connection.request(method, "/v1/chat/completions", body=body)
        response = connection.getresponse()
        json.loads(response.read())
        statuses.append(response.status)
    connection.close()

    assert statuses == [400, 405, 200, 400, 200]


def test_it_answers_a_garbled_request_line_in_openai_shape(sim_server: ModelServer) -> None:
    with socket.create_connection((sim_server.host, sim_server.port), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        reply = sock.makefile("rb").read()

    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert_openai_error(json.loads(body))
