"""Helpers of the ledger tests: writing events the way services do, and the attacker."""

from __future__ import annotations

import contextlib

import pytest
from django.db import connection, transaction

from audit import ledger
from audit.ledger import Actor
from audit.models import LedgerEvent

# Real commits (sealing runs after commit). Only the audit tables are emptied after each test:
# truncating every table of the project costs about a second per test.
committed_db = pytest.mark.django_db(transaction=True, available_apps=["audit"])


def append_committed(count: int, *, job: str = "job-1", application: str = "app-1", **body) -> list[LedgerEvent]:
    events = []
    for index in range(count):
        with transaction.atomic():
            events.append(
                ledger.append(
                    "job.step_finished",
                    actor=Actor.worker("worker-1"),
                    subject={"job": job, "application": application, "step": index},
                    body={"index": index, **body},
                )
            )
    return events


@contextlib.contextmanager
def attacker():
    """The attacker's move: a superuser switches triggers off for this session, then tampers."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        try:
            yield cursor
        finally:
            cursor.execute("SET session_replication_role = origin")
