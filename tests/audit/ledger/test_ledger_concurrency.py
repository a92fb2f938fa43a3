"""Eight real OS processes append at once; the result is one gapless chain that verifies."""

from __future__ import annotations

import multiprocessing

import pytest
from django.db import connection

from audit import sealer
from audit.models import LedgerEvent, LedgerSeal
from audit.verify import verify_chain
from tests.audit.ledger.ledger_helpers import committed_db
from tests.audit.ledger.ledger_workers import append_as_worker

WRITERS = 8
PER_WRITER = 40


@pytest.mark.slow
@committed_db
def test_eight_processes_appending_at_once_produce_one_gapless_chain():
    database = connection.settings_dict["NAME"]
    context = multiprocessing.get_context("spawn")
    with context.Pool(WRITERS) as pool:
        written = pool.starmap(append_as_worker, [(database, f"writer-{n}", PER_WRITER) for n in range(WRITERS)])
    assert sum(written) == WRITERS * PER_WRITER

    sealer.seal_pending()
    seqs = list(LedgerSeal.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, WRITERS * PER_WRITER + 1))
    assert LedgerEvent.objects.count() == WRITERS * PER_WRITER
    report = verify_chain()
    assert report.ok, report.summary()
    assert report.events_verified == WRITERS * PER_WRITER
    # Each writer's own events keep their order inside the chain.
    for n in range(WRITERS):
        indexes = [
            event.body["index"]
            for event in LedgerEvent.objects.filter(actor_id=f"writer-{n}").select_related("seal").order_by("seal__seq")
        ]
        assert indexes == list(range(PER_WRITER))
