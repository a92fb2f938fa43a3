"""Walking the sealed chain: seals in seq order beside events in chain order, recomputing each link.

`walk` checks one stretch of seqs on the current transaction's snapshot and stops at the first fault,
which `_diagnose` names (edited, deleted, inserted, reordered, broken link). `walk_on_snapshot` is the
same walk in a spawned worker (audit.verify_child), on a snapshot the parent exported. `audit.verify`
splits the chain into stretches, walks them (here or in workers) and adds them up with the checkpoints.
"""

from __future__ import annotations

import hashlib
import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from typing import Any

from django.db import connection, transaction

GENESIS = bytes(32)
_FETCH = 10_000
_SWAP_REACH = 8


@dataclass(frozen=True)
class Problem:
    seq: int
    kind: str  # edited, deleted, inserted, reordered, truncated, rewritten, checkpoint signature invalid
    detail: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.kind} — {self.detail}"


def record(canonical: bytes, seq: int) -> bytes:
    """The bytes whose SHA-256 is the event digest of seq (audit/EVIDENCE.md)."""
    return b'{"event":%b,"seq":%d}' % (canonical, seq)


def event_digest(canonical: bytes, seq: int) -> bytes:
    return hashlib.sha256(record(canonical, seq)).digest()


@dataclass
class Stretch:
    """The outcome of walking seals first..last."""

    first: int
    last: int
    anchor: bytes  # the prev_hash the stretch starts from
    end_hash: bytes = b""
    verified: int = 0
    problem: Problem | None = None
    hashes_at: dict[int, bytes] = field(default_factory=dict)


def walk(first: int, last: int, wanted: set[int], on_batch: Callable[[int], object]) -> Stretch:
    """Walk seals first..last in seq order beside the events in chain order; stop at the first fault.

    Two index-ordered streams instead of a join: the n-th seal must name the n-th event in
    (xact_id, id) order, which also catches an unsealed event slipped inside the sealed range.
    """
    running, after = _walk_start(first)
    stretch = Stretch(first, last, anchor=running)
    before_running = b""
    expected = first
    sha256 = hashlib.sha256
    seals = _Prefetched(
        "ledger_verify_seals",
        # The three hashes in one value: per seal the stored bytes must equal prev ‖ digest ‖ hash
        # as recomputed, a single comparison in the common case.
        "SELECT seq, event_id, prev_hash || event_digest || hash FROM audit_ledgerseal "
        "WHERE seq BETWEEN %s AND %s ORDER BY seq",
        [first, last],
    )
    events_stream = _Prefetched(
        "ledger_verify_events",
        "SELECT id, convert_to(canonical, 'UTF8') FROM audit_ledgerevent "
        "WHERE (xact_id, id) > (%s, %s) ORDER BY xact_id, id",
        list(after),
    )
    events = itertools.chain.from_iterable(events_stream.batches())
    try:
        for rows in seals.batches():
            for seq, event_id, stored in rows:
                event = next(events, None)
                if seq == expected and event is not None and event[0] == event_id:
                    link = running + sha256(b'{"event":%b,"seq":%d}' % (event[1], seq)).digest()
                    following = sha256(link).digest()
                    if stored == link + following:
                        before_running, running = running, following
                        if seq in wanted:
                            stretch.hashes_at[seq] = running
                        expected += 1
                        continue
                stretch.problem = _diagnose(seq, expected, event_id, event, stored, running, before_running)
                return stretch
            stretch.verified += len(rows)
            on_batch(len(rows))
    finally:
        seals.close()
        events_stream.close()
    if expected <= last:
        stretch.problem = Problem(expected, "deleted", f"seq {expected}-{last} missing from the chain")
    stretch.end_hash = running
    return stretch


def walk_on_snapshot(
    index: int,
    snapshot: str,
    first: int,
    last: int,
    wanted: set[int],
    results: Queue[tuple[int, Stretch | Exception]],
    batches: Queue[int],
) -> None:
    """A child's stretch, on the parent's exported snapshot (audit.verify_child sets Django up first)."""
    from django.db import connections
    from psycopg import sql

    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            outcome = walk(first, last, wanted, batches.put)
        results.put((index, outcome))
    except Exception as error:
        results.put((index, error))
    finally:
        connections["default"].close()


def _diagnose(
    seq: int,
    expected: int,
    event_id: int,
    event: tuple[int, bytes] | None,
    stored: bytes,
    running: bytes,
    before_running: bytes,
) -> Problem:
    """What is wrong with the seal at `seq`, which did not recompute."""
    prev_hash, digest, stored_hash = stored[:32], stored[32:64], stored[64:]
    if seq != expected:
        gap = f"seq {expected}" + (f"-{seq - 1}" if seq - 1 > expected else "")
        return Problem(expected, "deleted", f"{gap} missing from the chain")
    if prev_hash != running:
        if prev_hash == before_running:
            return Problem(seq - 1, "inserted", "this seq was not in the chain as sealed")
        return Problem(seq, "broken link", "prev_hash is not the hash of the previous seq")
    if event is None or event[0] != event_id:
        return _diagnose_order(seq, event_id, event[0] if event else None)
    if event_digest(event[1], seq) != digest:
        return _diagnose_digest(seq, event_id, event[1])
    if hashlib.sha256(prev_hash + digest).digest() != stored_hash:
        return Problem(seq, "edited", "the seal row was altered (stored hash differs)")
    return Problem(seq, "broken link", "the seal row does not recompute")


def _walk_start(first: int) -> tuple[bytes, tuple[int, int]]:
    """The hash before `first` (its stored prev_hash: the window's anchor) and the chain-order key
    after which the window's events start (that of the last surviving event sealed before it)."""
    if first == 1:
        return GENESIS, (-(2**63), -(2**63))
    with connection.cursor() as cursor:
        cursor.execute("SELECT prev_hash FROM audit_ledgerseal WHERE seq = %s", [first])
        row = cursor.fetchone()
        running = bytes(row[0]) if row else GENESIS
        cursor.execute(
            "SELECT e.xact_id, e.id FROM audit_ledgerseal s JOIN audit_ledgerevent e ON e.id = s.event_id "
            "WHERE s.seq < %s ORDER BY s.seq DESC LIMIT 1",
            [first],
        )
        row = cursor.fetchone()
    return running, (tuple(row) if row else (-(2**63), -(2**63)))


class _Prefetched:
    """Rows of a server-side cursor fetched in batches by a background thread, so the database
    produces the next batch while this thread hashes the current one."""

    def __init__(self, name: str, sql: str, params: list) -> None:
        connection.ensure_connection()
        self.cursor = connection.connection.cursor(name=name, binary=True)
        self.cursor.execute(sql, params)
        self.batches_ready: queue.Queue = queue.Queue(maxsize=2)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._fetch, name=f"{name}-fetch", daemon=True)
        self.thread.start()

    def _fetch(self) -> None:
        try:
            while not self.stopped.is_set():
                rows = self.cursor.fetchmany(_FETCH)
                self._put(rows)
                if not rows:
                    return
        except Exception as error:  # handed to the consuming thread
            self._put(error)

    def _put(self, item: object) -> None:
        while not self.stopped.is_set():
            try:
                self.batches_ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def batches(self) -> Iterator[list[tuple[Any, ...]]]:
        while True:
            item = self.batches_ready.get()
            if isinstance(item, Exception):
                raise item
            if not item:
                return
            yield item

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.cursor.close()


def _diagnose_order(seq: int, event_id: int, found_id: int | None) -> Problem:
    """The seal at `seq` names another event than the next one in chain order."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM audit_ledgerevent WHERE id = %s", [event_id])
        if cursor.fetchone() is None:
            return Problem(seq, "deleted", f"event {event_id}, sealed at this seq, no longer exists")
        if found_id is None:
            return Problem(seq, "reordered", f"event {event_id} is out of chain order")
        cursor.execute("SELECT seq FROM audit_ledgerseal WHERE event_id = %s", [found_id])
        row = cursor.fetchone()
    if row is None:
        return Problem(seq, "inserted", f"event {found_id} sits before seq {seq} in chain order but is unsealed")
    return Problem(
        seq, "reordered", f"seq {seq} names event {event_id}, but event {found_id} (seq {row[0]}) comes first"
    )


def _diagnose_digest(seq: int, event_id: int, canonical: bytes) -> Problem:
    """An event's content no longer matches its seq's digest: swapped with a neighbour, or edited?"""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT seq, event_digest FROM audit_ledgerseal WHERE seq BETWEEN %s AND %s AND seq <> %s",
            [seq - _SWAP_REACH, seq + _SWAP_REACH, seq],
        )
        for other_seq, other_digest in cursor.fetchall():
            if event_digest(canonical, other_seq) == bytes(other_digest):
                return Problem(
                    seq,
                    "reordered",
                    f"event {event_id} holds the content sealed at seq {other_seq} (rows swapped)",
                )
    return Problem(seq, "edited", f"event {event_id} no longer matches its sealed digest (content changed)")
