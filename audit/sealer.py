"""Chaining appended events: the one place where the ledger is serialised.

Why not a chain lock at append time? Holding a lock from the append until commit makes every
governed transaction of the whole system wait on every other one — a slow transaction stalls them
all. Instead, writers INSERT freely (an identity id and their transaction id, `pg_current_xact_id()`),
and one sealer at a time (a transaction-level advisory lock) gives events their gapless `seq`,
`prev_hash` and `hash`, in (xact_id, id) order, a moment after commit.

Why is that order safe to seal incrementally? The sealer only takes events whose xact_id is below a
horizon read from the *same* snapshot as the rows: the smallest transaction id still running, or
the next unassigned one. Every transaction below the horizon has committed or aborted, and every
transaction still to write has a larger id, so no event can ever appear before what is already
sealed: the sealed set is always a prefix of the (xact_id, id) order, and the last sealed event's
(xact_id, id) is the only bookmark needed. Within a transaction, (xact_id, id) is append order.
Transactions of other databases on the same server cannot write these tables; when one holds the
horizon, the sealer identifies it from the backends' status and leaves it out (remembering, per
session, which transactions it has placed, because reading every backend's status is not free).

The price: a transaction that writes here and stays open holds the horizon, so events of
transactions that started writing after it wait until it ends. Seal lag is therefore bounded by the
longest writing transaction of this database (keep them short; `idle_in_transaction_session_timeout`
guards against leaks) and by the beat interval (the backstop); `ledger_verify` shows the recent lag
and the unsealed count. Unsealed events are protected by the append-only triggers, not yet by the
chain. The order is the order transactions first wrote, which can differ from commit order between
overlapping transactions; an event's `time` says when it was appended.

Sealing runs right after each appending transaction commits (`seal_after_commit`, which gives up at
once if another sealer is at work: that one, the next commit or the beat task picks the event up)
and from the `audit.seal_ledger` beat task. A caller that commits several appending transactions in a
row (the synchronous endpoint runs a job's submit, claim and step back to back) wraps them in
`sealing_deferred()`: one seal at the end instead of one per commit. The hashing is done by the database function
`audit_seal_pending` (migration 0001) in one round trip; the verifier recomputes every hash
independently in Python (`audit.verify`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection

from audit.errors import LedgerError

logger = logging.getLogger(__name__)

SEAL_LOCK_KEY = 7021802772598108721  # pg advisory lock held by the sealer (see migration 0001)


def seal_pending(*, wait: bool = True, batch_size: int = 2000, max_batches: int = 50) -> int:
    """Seal what can be sealed now; returns the number of events sealed (-1: another sealer was busy).

    It runs as its own transaction: inside another one it could not see that transaction's events
    as finished anyway, and would hold the sealer's lock until that transaction ends.
    """
    if connection.in_atomic_block:
        raise LedgerError("seal_pending() runs in its own transaction; call it outside transaction.atomic()")
    with connection.cursor() as cursor:
        cursor.execute("SELECT audit_seal_pending(%s, %s, %s)", [batch_size, max_batches, wait])
        return cursor.fetchone()[0]


_deferral = threading.local()


@contextmanager
def sealing_deferred() -> Iterator[None]:
    """Commits inside this block do not seal; one seal runs when it ends (also when it ends in error),
    if any of them appended."""
    if getattr(_deferral, "active", False):
        yield
        return
    _deferral.active, _deferral.pending = True, False
    try:
        yield
    finally:
        pending = _deferral.pending
        _deferral.active = _deferral.pending = False
        if pending:
            seal_after_commit()


def seal_after_commit() -> None:
    # Runs in the appender's request after its commit: never wait for another sealer, keep it short.
    if getattr(_deferral, "active", False):
        _deferral.pending = True
        return
    try:
        seal_pending(wait=False, batch_size=500, max_batches=4)
    except Exception:
        logger.warning("ledger: sealing after commit failed; the beat task will retry", exc_info=True)


@dataclass(frozen=True)
class ChainHead:
    seq: int
    hash: bytes
    xact_id: int
    event_id: int


def chain_head() -> ChainHead | None:
    """The last seal and the chain-order key of its event (None for an empty chain)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.seq, s.hash, e.xact_id, s.event_id
              FROM (SELECT * FROM audit_ledgerseal ORDER BY seq DESC LIMIT 1) s
              LEFT JOIN audit_ledgerevent e ON e.id = s.event_id
            """
        )
        row = cursor.fetchone()
    if row is None:
        return None
    seq, digest, xact_id, event_id = row
    # A head whose event is gone (tampering) still bounds the chain; order it last.
    return ChainHead(seq, bytes(digest), xact_id if xact_id is not None else 2**63 - 1, event_id)


@dataclass(frozen=True)
class SealLag:
    unsealed: int
    oldest_unsealed_age: timedelta | None
    recent_p50: timedelta | None
    recent_max: timedelta | None
    recent_window: int

    def describe(self) -> str:
        parts = []
        if self.recent_p50 is not None:
            parts.append(
                f"seal lag p50 {_ms(self.recent_p50)}, max {_ms(self.recent_max)} (last {self.recent_window} seals)"
            )
        if self.unsealed:
            parts.append(f"{self.unsealed} unsealed (oldest {_ms(self.oldest_unsealed_age)})")
        else:
            parts.append("0 unsealed")
        return ", ".join(parts)


def seal_lag(*, window: int = 1000) -> SealLag:
    """How far sealing is behind now (unsealed events) and was recently (sealed_at - event time)."""
    head = chain_head()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), now() - min(created_at) FROM audit_ledgerevent WHERE (xact_id, id) > (%s, %s)",
            [head.xact_id, head.event_id] if head else [-1, -1],
        )
        unsealed, oldest = cursor.fetchone()
        cursor.execute(
            """
            SELECT count(*),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY lag),
                   max(lag)
              FROM (SELECT s.sealed_at - e.created_at AS lag
                      FROM audit_ledgerseal s JOIN audit_ledgerevent e ON e.id = s.event_id
                     ORDER BY s.seq DESC LIMIT %s) recent
            """,
            [window],
        )
        count, p50, worst = cursor.fetchone()
    return SealLag(
        unsealed=unsealed,
        oldest_unsealed_age=oldest if unsealed else None,
        recent_p50=p50 if count else None,
        recent_max=worst if count else None,
        recent_window=count,
    )


def _ms(value: timedelta | None) -> str:
    if value is None:
        return "-"
    millis = max(value.total_seconds(), 0) * 1000
    return f"{millis:.0f} ms" if millis < 10_000 else f"{millis / 1000:.1f} s"
