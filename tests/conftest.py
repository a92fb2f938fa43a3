"""Test-wide set-up: real PostgreSQL and Redis — the configured ones, else the embedded ones — and the
shared fixtures of tests/support, registered once for every folder.

One folder per app (routing/, review/, evaluation/, audit/, web/, controlplane/, modelserver/), with its
browser tests beside its other tests; security/ holds the product's invariants, one module per finding."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings as hypothesis_settings

from controlplane import embedded

# Fixtures every folder uses: the model server and workers, the personas, the browser. Registered here,
# once, so a session-scoped fixture is one for the whole run, never one per folder.
pytest_plugins = ["tests.support.workers", "tests.support.personas", "tests.support.browser"]

# litellm fetches its model price map from the internet when first used, retrying with back-off before it
# falls back to the copy it ships; the tests (and a machine without that network) use the shipped copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# Property tests: random examples locally (`dev`, finds new cases), the same examples on every CI run
# (`ci`, derandomised, so a failure there is reproducible and never a coin toss). A test's own
# @settings still overrides what it names (e.g. its max_examples).
hypothesis_settings.register_profile(
    "ci", derandomize=True, max_examples=100, deadline=None, print_blob=True, database=None
)
hypothesis_settings.register_profile("dev", print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

# Settings were already read (pytest-django loads them first) with the embedded URLs wherever
# nothing was configured; make sure those services are running before any test touches them, and stop
# at the end the ones this run started (a `make run` that was already up keeps its own).
_STARTED: list[str] = []
if not os.environ.get("DATABASE_URL"):
    if not embedded.postgres_running():
        _STARTED.append("postgres")
    embedded.ensure_postgres()
if not os.environ.get("REDIS_URL"):
    if not embedded.redis_running():
        _STARTED.append("redis")
    embedded.ensure_redis()


def pytest_sessionfinish(session, exitstatus):
    if "redis" in _STARTED:
        embedded.stop_redis()
    if "postgres" in _STARTED:
        embedded.stop_postgres()


@pytest.fixture
def redis_client():
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture(scope="session")
def test_database(django_db_setup, django_db_blocker, django_db_keepdb, django_db_createdb):
    """The test database, even in a session of live tests only.

    pytest-django sets up test databases only for the aliases that some collected test asks for
    through `db`, `transactional_db`, `live_server` or a django_db marker. A session holding only
    live tests (`pytest -m e2e`) would otherwise commit into the configured database itself.
    """
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    test_name = connection.settings_dict["TEST"]["NAME"]
    if connection.settings_dict["NAME"] == test_name:
        yield test_name
        return
    with django_db_blocker.unblock():
        config = setup_databases(
            verbosity=0, interactive=False, aliases={"default"}, keepdb=django_db_keepdb and not django_db_createdb
        )
    assert connection.settings_dict["NAME"] == test_name
    yield test_name
    if not django_db_keepdb:
        with django_db_blocker.unblock():
            teardown_databases(config, verbosity=0)


@pytest.fixture
def live_db(test_database, django_db_blocker):
    """Database access without a wrapping transaction, in the test database: what a test writes is
    committed, so real workers in other processes see it. The ledger refuses TRUNCATE, so these
    tables are never flushed; tests make their own rows with unique names and look only at those."""
    from django.db import connection

    with django_db_blocker.unblock():
        yield
        connection.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run last. Playwright's sync API (a session-scoped fixture of pytest-playwright) keeps an
    asyncio event loop running in the main thread from the first browser test to the end of the session,
    so any later `asyncio.run()` — the async SDK tests, the Agents SDK's `run_sync`, pydantic-ai — would fail
    with "cannot be called from a running event loop". The sort is stable: every other order is kept."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
