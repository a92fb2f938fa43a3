"""A live Arbiter for tests that need real HTTP: the WSGI app on a loopback port in this process, real
Celery workers on a private queue, the local model server. Rows are committed (the ledger refuses
TRUNCATE, so nothing is flushed): every module makes its own application and policy."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.db import connection
from django.test import override_settings

from routing.decide.parameters import DEFAULT_SUPPORTED
from routing.execute import facts
from routing.models import ModelDeployment, Policy
from tests.support.governed import Governed, governed
from tests.support.personas import key_for
from tests.support.workers import Workers, database_url_for_workers


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


@dataclass
class LiveArbiter:
    url: str
    setup: Governed
    key: str
    queue: str


class ClosingWSGIServer(ThreadedWSGIServer):
    """Django's threaded server, which on shutdown also ends the keep-alive connections clients left open.

    A request thread closes its database connections only when its HTTP connection ends, and an SDK client
    that is never closed keeps it open: those threads would keep their sessions in the test database, and
    pytest-django could not drop it at the end of the run ("being accessed by other users")."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.open_requests: set[socket.socket] = set()
        self.requests_changed = threading.Condition()

    def process_request(self, request, client_address) -> None:
        with self.requests_changed:
            self.open_requests.add(request)
        super().process_request(request, client_address)

    def close_request(self, request) -> None:
        super().close_request(request)  # in the request's thread: closes its database connections
        with self.requests_changed:
            self.open_requests.discard(request)
            self.requests_changed.notify_all()

    def end_open_requests(self, *, wait_s: float = 10.0) -> None:
        with self.requests_changed:
            for request in self.open_requests:
                with contextlib.suppress(OSError):  # already closed by the client
                    request.shutdown(socket.SHUT_RDWR)  # the thread reads EOF and finishes its request
            self.requests_changed.wait_for(lambda: not self.open_requests, timeout=wait_s)


class ServerThread:
    def __init__(self) -> None:
        self.server = ClosingWSGIServer(("127.0.0.1", 0), QuietHandler, allow_reuse_address=False)
        self.server.set_app(WSGIHandler())
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.end_open_requests()
        self.server.server_close()
        self.thread.join(timeout=10)


def live_arbiter(model_server_url: str, *, worker_count: int = 1) -> Iterator[LiveArbiter]:
    """Generator for a module-scoped fixture (the caller holds django_db_blocker.unblock())."""
    from django.conf import settings

    from controlplane.celery import app as celery_app

    test_name = connection.settings_dict.get("TEST", {}).get("NAME") or ""
    if connection.settings_dict["NAME"] != test_name:
        # pytest-django creates the test database only for sessions holding a django_db test; never
        # fall through to the development database.
        raise RuntimeError("the test database is not set up: run this module with a django_db test in it")
    queue = f"arbiter-api-test-{uuid.uuid4().hex[:8]}"
    previous_queue = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_workers(),
        "ARBITER_QUEUE": queue,
        "ARBITER_RETRY_BASE_S": "0.05",
        "ARBITER_PROVIDER_TIMEOUT_S": "5",
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "REDIS_URL": settings.REDIS_URL,
    }
    pool = Workers(queue, env)
    pool.start(count=worker_count, concurrency=2)
    try:
        with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
            setup = governed(model_server_url)
        # `model: auto` names the default policy; this module's policy is it while the module runs.
        Policy.objects.filter(is_default=True).update(is_default=False)
        Policy.objects.filter(pk=setup.policy.pk).update(is_default=True)
        key = key_for(setup.application, "jobs:read", "jobs:write")
        with ServerThread() as server:
            yield LiveArbiter(url=server.url, setup=setup, key=key, queue=queue)
    finally:
        pool.stop()
        celery_app.conf.task_default_queue = previous_queue
        connection.close()


@contextmanager
def deployment_without(deployment: ModelDeployment, *names: str) -> Iterator[None]:
    """The deployment's catalog entry without `names` for the block (the catalog cache forgotten both ways)."""
    deployment.parameters = [name for name in DEFAULT_SUPPORTED if name not in names]
    deployment.save(update_fields=["parameters"])
    facts.catalog_forget()
    try:
        yield
    finally:
        deployment.parameters = list(DEFAULT_SUPPORTED)
        deployment.save(update_fields=["parameters"])
        facts.catalog_forget()
