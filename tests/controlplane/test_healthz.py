from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_it_reports_each_part_and_503_when_one_is_down(client, settings):
    # No worker and no model server run in this test: the page must say so and not answer 200.
    settings.ARBITER_MODELSERVER_URL = "http://127.0.0.1:9/v1"
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["up"] is True
    assert body["checks"]["broker"]["up"] is True
    assert body["checks"]["workers"]["up"] is False
    assert body["checks"]["model_server"]["up"] is False


def test_it_refuses_post(client):
    assert client.post("/healthz").status_code == 405
