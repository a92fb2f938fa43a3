"""Test-wide set-up: real PostgreSQL and Redis — the configured ones, else the embedded ones."""

from __future__ import annotations

import os

import pytest

from controlplane import embedded

# Settings were already read (pytest-django loads them first) with the embedded URLs wherever
# nothing was configured; make sure those services are running before any test touches them.
if not os.environ.get("DATABASE_URL"):
    embedded.ensure_postgres()
if not os.environ.get("REDIS_URL"):
    embedded.ensure_redis()


@pytest.fixture
def redis_client():
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()
