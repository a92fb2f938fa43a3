"""The entry point of a spawned verification worker. It imports nothing of Django's apps at module
level: a spawned child must set Django up (on the parent's database) before any model is imported."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.queues import Queue

    from audit.chain_walk import Stretch


def walk_in_child(
    index: int,
    snapshot: str,
    first: int,
    last: int,
    wanted: set[int],
    results: Queue[tuple[int, Stretch | Exception]],
    batches: Queue[int],
    database: dict[str, Any],
) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    django.setup()
    from django.conf import settings

    # The parent's database, whichever it is (a test database is named differently from the settings').
    settings.DATABASES["default"].update(database)
    from audit.chain_walk import walk_on_snapshot

    walk_on_snapshot(index, snapshot, first, last, wanted, results, batches)
