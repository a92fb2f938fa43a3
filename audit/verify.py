"""Recomputing the chain: `verify_chain` (the whole ledger or a window) and `verify_events_for` (one job).

For every seal in seq order: the seq follows the previous one; the seal names the next event in
chain order (xact_id, id) — so a deleted, inserted or reordered event shows; SHA-256 of the
record {"event":<canonical>,"seq":n} equals the sealed digest; prev_hash equals the previous hash;
and SHA-256(prev_hash ‖ digest) equals the stored hash. Then every checkpoint (database and file)
must carry a valid signature from a trusted key and match the chain at its seq — a checkpoint
beyond the chain's end means the tail was truncated. The first fault is diagnosed (edited,
deleted, inserted, reordered, truncated, rewritten, checkpoint signature invalid) and named by seq.

Speed: seals and events are read as two index-ordered streams (no join) through server-side
cursors in binary form, fetched by background threads while this one hashes; per event the
Python work is two SHA-256 calls and one comparison. All reads share one REPEATABLE READ
snapshot; with workers > 1, forked processes verify stretches of the chain on that same exported
snapshot.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import multiprocessing
import queue
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction
from tqdm import tqdm

from audit import checkpoints, sealer
from audit.checkpoints import Checkpoint
from audit.verify_child import walk_in_child

GENESIS = bytes(32)
_FETCH = 10_000
PARALLEL_MINIMUM = 100_000  # below this, starting processes costs more than it saves
_SWAP_REACH = 8


@dataclass(frozen=True)
class Problem:
    seq: int
    kind: str  # edited, deleted, inserted, reordered, truncated, rewritten, checkpoint signature invalid
    detail: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.kind} — {self.detail}"


@dataclass
class VerifyReport:
    events_verified: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_seq: int | None = None
    head_hash: str | None = None
    checkpoint: Checkpoint | None = None
    checkpoint_sources: str = ""
    seal_lag: sealer.SealLag | None = None
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def problem(self) -> Problem | None:
        return min(self.problems, key=lambda problem: problem.seq) if self.problems else None

    def summary(self) -> str:
        if not self.ok:
            more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            return f"ledger NOT intact at seq {self.problem.seq}: {self.problem.kind} — {self.problem.detail}{more}"
        if self.events_verified:
            span = f"{self.events_verified} events verified (seq {self.first_seq}-{self.last_seq})"
            head = f"head seq {self.head_seq} {self.head_hash[:16]}"
        else:
            span, head = "0 events verified", "empty chain"
        if self.checkpoint is not None:
            checkpoint = (
                f"last checkpoint seq {self.checkpoint.seq} at {self.checkpoint.time} ({self.checkpoint_sources})"
            )
        else:
            checkpoint = "no checkpoint yet"
        lag = self.seal_lag.describe() if self.seal_lag else ""
        return "; ".join(part for part in (f"ledger intact: {span}", head, checkpoint, lag) if part)


def verify_chain(
    *,
    since: datetime | int | None = None,
    until: datetime | int | None = None,
    progress: bool = False,
    workers: int = 1,
) -> VerifyReport:
    """Verify the sealed chain, or the window [since, until] (a time or a seq) from its first prev_hash.

    With workers > 1 (command-line use: it forks), long chains are split into stretches verified
    in parallel processes on one exported snapshot; each stretch must end on the hash the next one
    starts from.
    """
    report = VerifyReport()
    # Read the file before the database snapshot: every line in it was committed before it was written.
    file_checkpoints, file_problems = checkpoints.file_checkpoints()
    report.notes.extend(file_problems)
    with one_snapshot():
        head = sealer.chain_head()
        report.seal_lag = sealer.seal_lag()
        db_checkpoints = checkpoints.database_checkpoints()
        if head is None:
            _check_checkpoints(report, db_checkpoints, file_checkpoints, {}, first=1, last=0, open_end=True)
            return report
        report.head_seq, report.head_hash = head.seq, head.hash.hex()
        first, last = resolve_window(since, until, head.seq)
        if first > last:
            report.notes.append("no sealed events in the window")
            return report
        wanted = {c.seq for c in (*db_checkpoints, *file_checkpoints) if first <= c.seq <= last}
        with tqdm(total=last - first + 1, disable=not progress, file=sys.stderr, unit="ev", mininterval=0.5) as bar:
            if workers > 1 and last - first + 1 >= PARALLEL_MINIMUM:
                stretches = _walk_in_parallel(first, last, wanted, workers, bar.update)
            else:
                stretches = [_walk(first, last, wanted, bar.update)]
        hashes_at = _combine(report, stretches)
        _check_checkpoints(
            report,
            db_checkpoints,
            file_checkpoints,
            hashes_at,
            first=first,
            last=last,
            open_end=until is None,
        )
    return report


def verify_events_for(*, job_id: object) -> VerifyReport:
    """Each of the job's sealed events recomputes to its stored hash and links to its predecessor."""
    report = VerifyReport()
    with one_snapshot():
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT e.id, convert_to(e.canonical, 'UTF8'), s.seq, s.prev_hash, s.event_digest, s.hash,
                       p.hash AS predecessor_hash
                  FROM audit_ledgerevent e
                  LEFT JOIN audit_ledgerseal s ON s.event_id = e.id
                  LEFT JOIN audit_ledgerseal p ON p.seq = s.seq - 1
                 WHERE e.subject_job = %s
                 ORDER BY e.xact_id, e.id
                """,
                [str(job_id)],
            )
            rows = cursor.fetchall()
        head = sealer.chain_head()
    unsealed = 0
    for event_id, canonical, seq, prev_hash, digest, stored_hash, predecessor_hash in rows:
        if seq is None:
            unsealed += 1
            continue
        prev_hash, digest, stored_hash = bytes(prev_hash), bytes(digest), bytes(stored_hash)
        if _digest(bytes(canonical), seq) != digest:
            report.problems.append(Problem(seq, "edited", f"event {event_id} no longer matches its sealed digest"))
        elif hashlib.sha256(prev_hash + digest).digest() != stored_hash:
            report.problems.append(Problem(seq, "edited", f"the seal row of event {event_id} was altered"))
        elif prev_hash != (bytes(predecessor_hash) if predecessor_hash is not None else GENESIS if seq == 1 else None):
            report.problems.append(Problem(seq, "broken link", "prev_hash does not match the hash of seq - 1"))
        else:
            report.events_verified += 1
            report.first_seq = seq if report.first_seq is None else min(report.first_seq, seq)
            report.last_seq = seq if report.last_seq is None else max(report.last_seq, seq)
    if unsealed:
        report.notes.append(f"{unsealed} of the job's events are not sealed yet")
    if head is not None:
        report.head_seq, report.head_hash = head.seq, head.hash.hex()
    return report


@contextlib.contextmanager
def one_snapshot():
    """A transaction whose reads all see one snapshot (REPEATABLE READ, when this is the outermost)."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


def record(canonical: bytes, seq: int) -> bytes:
    """The bytes whose SHA-256 is the event digest of seq (audit/EVIDENCE.md)."""
    return b'{"event":%b,"seq":%d}' % (canonical, seq)


def _digest(canonical: bytes, seq: int) -> bytes:
    return hashlib.sha256(record(canonical, seq)).digest()


def resolve_window(since: datetime | int | None, until: datetime | int | None, head_seq: int) -> tuple[int, int]:
    with connection.cursor() as cursor:
        if isinstance(since, datetime):
            cursor.execute(
                "SELECT min(s.seq) FROM audit_ledgerseal s JOIN audit_ledgerevent e ON e.id = s.event_id "
                "WHERE e.created_at >= %s",
                [since],
            )
            first = cursor.fetchone()[0] or head_seq + 1
        else:
            first = max(since or 1, 1)
        if isinstance(until, datetime):
            cursor.execute(
                "SELECT max(s.seq) FROM audit_ledgerseal s JOIN audit_ledgerevent e ON e.id = s.event_id "
                "WHERE e.created_at < %s",
                [until],
            )
            last = cursor.fetchone()[0] or 0
        else:
            last = min(until, head_seq) if until is not None else head_seq
    return first, last


@dataclass
class _Stretch:
    """The outcome of walking seals first..last."""

    first: int
    last: int
    anchor: bytes  # the prev_hash the stretch starts from
    end_hash: bytes = b""
    verified: int = 0
    problem: Problem | None = None
    hashes_at: dict[int, bytes] = field(default_factory=dict)


def _walk(first: int, last: int, wanted: set[int], on_batch: Callable[[int], object]) -> _Stretch:
    """Walk seals first..last in seq order beside the events in chain order; stop at the first fault.

    Two index-ordered streams instead of a join: the n-th seal must name the n-th event in
    (xact_id, id) order, which also catches an unsealed event slipped inside the sealed range.
    """
    running, after = _walk_start(first)
    stretch = _Stretch(first, last, anchor=running)
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


def _walk_in_parallel(
    first: int, last: int, wanted: set[int], workers: int, on_batch: Callable[[int], object]
) -> list[_Stretch]:
    """Stretches walked by child processes, each in a transaction on this transaction's snapshot.

    Spawned, not forked: a forked child inherits the parent's open sockets (the database's, the
    broker's) and the after-fork hooks of the libraries holding them, and one of those — kombu
    closing a channel that was waiting on a reply — blocks forever."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot = cursor.fetchone()[0]
    size = -(-(last - first + 1) // workers)
    bounds = [(start, min(start + size - 1, last)) for start in range(first, last + 1, size)]
    context = multiprocessing.get_context("spawn")
    database = dict(connection.settings_dict)
    results, batches = context.Queue(), context.Queue()
    processes = [
        context.Process(
            target=walk_in_child,
            args=(
                index,
                snapshot,
                start,
                end,
                {seq for seq in wanted if start <= seq <= end},
                results,
                batches,
                database,
            ),
            daemon=True,
        )
        for index, (start, end) in enumerate(bounds)
    ]
    for process in processes:
        process.start()
    collected: dict[int, _Stretch] = {}
    try:
        while len(collected) < len(processes):
            while not batches.empty():
                on_batch(batches.get())
            try:
                index, outcome = results.get(timeout=0.2)
            except queue.Empty:
                failed = [p.exitcode for i, p in enumerate(processes) if i not in collected and p.exitcode]
                if failed:
                    raise RuntimeError(f"a verification worker exited with code {failed[0]}") from None
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            collected[index] = outcome
    finally:
        for process in processes:
            process.join(timeout=5)
    return [collected[index] for index in range(len(processes))]


def walk_on_snapshot(index: int, snapshot: str, first: int, last: int, wanted: set[int], results, batches) -> None:
    """A child's stretch (see audit.verify_child, which sets Django up first)."""
    from django.db import connections
    from psycopg import sql

    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            outcome = _walk(first, last, wanted, batches.put)
        results.put((index, outcome))
    except Exception as error:
        results.put((index, error))
    finally:
        connections["default"].close()


def _combine(report: VerifyReport, stretches: list[_Stretch]) -> dict[int, bytes]:
    """Add the stretches up in seq order, up to the first fault; each must start where the last ended."""
    hashes_at: dict[int, bytes] = {}
    for previous, stretch in zip([None, *stretches], stretches, strict=False):
        if previous is not None and previous.end_hash != stretch.anchor:
            report.problems.append(
                Problem(stretch.first, "broken link", "prev_hash is not the hash of the previous seq")
            )
            return hashes_at
        report.events_verified += stretch.verified
        hashes_at.update(stretch.hashes_at)
        if stretch.problem is not None:
            report.problems.append(stretch.problem)
            return hashes_at
    report.first_seq, report.last_seq = stretches[0].first, stretches[-1].last
    return hashes_at


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
    if _digest(event[1], seq) != digest:
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

    def batches(self):
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
            if _digest(canonical, other_seq) == bytes(other_digest):
                return Problem(
                    seq,
                    "reordered",
                    f"event {event_id} holds the content sealed at seq {other_seq} (rows swapped)",
                )
    return Problem(seq, "edited", f"event {event_id} no longer matches its sealed digest (content changed)")


def _check_checkpoints(
    report: VerifyReport,
    db_checkpoints: list[Checkpoint],
    file_checkpoints: list[Checkpoint],
    hashes_at: dict[int, bytes],
    *,
    first: int,
    last: int,
    open_end: bool,
) -> None:
    trusted = checkpoints.trusted_public_keys()
    db_messages = {c.message for c in db_checkpoints}
    chain_end = report.head_seq or 0
    latest: Checkpoint | None = None
    for checkpoint in (*db_checkpoints, *file_checkpoints):
        if checkpoint.seq < first or (checkpoint.seq > last and not open_end):
            continue
        problem = checkpoint.signature_problem(trusted)
        if problem:
            report.problems.append(Problem(checkpoint.seq, "checkpoint signature invalid", problem))
            continue
        if checkpoint.seq > chain_end:
            report.problems.append(
                Problem(
                    chain_end + 1,
                    "truncated",
                    f"checkpoint at seq {checkpoint.seq} ({checkpoint.source}) but the chain ends at seq {chain_end}",
                )
            )
            continue
        if checkpoint.source != "database" and checkpoint.message not in db_messages:
            report.problems.append(
                Problem(
                    checkpoint.seq,
                    "rewritten",
                    f"checkpoint {checkpoint.source} is missing from the database",
                )
            )
            continue
        chain_hash = hashes_at.get(checkpoint.seq)
        if chain_hash is not None and chain_hash.hex() != checkpoint.hash:
            report.problems.append(
                Problem(
                    checkpoint.seq,
                    "rewritten",
                    f"the chain's hash differs from the checkpoint signed at {checkpoint.time} ({checkpoint.source})",
                )
            )
            continue
        if chain_hash is None:
            continue  # beyond where the walk stopped
        if latest is None or checkpoint.seq >= latest.seq:
            latest = checkpoint
    if latest is not None:
        report.checkpoint = latest
        sources = {
            "database" if c.source == "database" else "file"
            for c in (*db_checkpoints, *file_checkpoints)
            if c.message == latest.message
        }
        report.checkpoint_sources = "+".join(sorted(sources))
