"""Code run in spawned processes by the concurrency test (and nothing else): set Django up on the
test database, then append like a service would, one transaction per event."""

from __future__ import annotations

import os


def append_as_worker(database: str, name: str, count: int) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()
    from django.db import connections, transaction

    connections["default"].settings_dict["NAME"] = database
    from audit import ledger
    from audit.ledger import Actor

    for index in range(count):
        with transaction.atomic():
            ledger.append("job.step_finished", actor=Actor.worker(name), subject={"job": name}, body={"index": index})
    connections.close_all()
    return count
