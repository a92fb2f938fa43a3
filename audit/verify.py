"""Recomputing the chain: `verify_chain` (the whole ledger or a window) and `verify_events_for` (one job).

For every seal in seq order: the seq follows the previous one; the seal names the next event in
chain order (xact_id, id) — so a deleted, inserted or reordered event shows; SHA-256 of the
record {"event":<canonical>,"seq":n} equals the sealed digest; prev_hash equals the previous hash;
and SHA-256(prev_hash ‖ digest) equals the stored hash. Then every checkpoint (database and file)
must carry a valid signature from a trusted key and match the chain at its seq — a checkpoint
beyond the chain's end means the tail was truncated. The first fault is diagnosed (edited,
deleted, inserted, reordered, truncated, rewritten, checkpoint signature invalid) and named by seq.

The walk itself is `audit.chain_walk`. Speed: seals and events are read as two index-ordered streams
(no join) through server-side cursors in binary form, fetched by background threads while this one
hashes; per event the Python work is two SHA-256 calls and one comparison. All reads share one
REPEATABLE READ snapshot; with workers > 1, spawned processes (audit.verify_child) verify stretches of
the chain on that same exported snapshot.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import queue
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from tqdm import tqdm

from audit import checkpoints, sealer
from audit.chain_walk import GENESIS, Problem, Stretch, event_digest, walk
from audit.checkpoints import Checkpoint
from audit.verify_child import walk_in_child

PARALLEL_MINIMUM = 100_000  # below this, starting processes costs more than it saves


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
        problem = self.problem
        if problem is not None:
            more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            return f"ledger NOT intact at seq {problem.seq}: {problem.kind} — {problem.detail}{more}"
        if self.events_verified and self.head_hash is not None:
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
    witness_files: Sequence[Path] = (),
) -> VerifyReport:
    """Verify the sealed chain, or the window [since, until] (a time or a seq) from its first prev_hash.

    With workers > 1 (command-line use: it forks), long chains are split into stretches verified
    in parallel processes on one exported snapshot; each stretch must end on the hash the next one
    starts from. `witness_files` are copies of checkpoints a witness kept (JSON Lines, as the file).
    """
    report = VerifyReport()
    # Read the files before the database snapshot: every line in them was committed before it was written.
    file_checkpoints, file_problems = checkpoints.file_checkpoints()
    for path in witness_files:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no checkpoint file {path}")
        more, problems = checkpoints.file_checkpoints(Path(path))
        file_checkpoints += more
        file_problems += problems
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
                stretches = [walk(first, last, wanted, bar.update)]
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
        if until is None:
            _uncovered_tail(report)
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
        if event_digest(bytes(canonical), seq) != digest:
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
def one_snapshot() -> Iterator[None]:
    """A transaction whose reads all see one snapshot (REPEATABLE READ, when this is the outermost)."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


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


def _walk_in_parallel(
    first: int, last: int, wanted: set[int], workers: int, on_batch: Callable[[int], object]
) -> list[Stretch]:
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
    collected: dict[int, Stretch] = {}
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


def _combine(report: VerifyReport, stretches: list[Stretch]) -> dict[int, bytes]:
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
    """Every checkpoint must lie within the chain and agree with it at its seq.

    A checkpoint signs the hash of the whole chain up to its seq, so the newest trusted one that agrees
    vouches for all before it. Signatures (the costly part: checkpoints come every few seconds) are
    therefore checked where they count: the newest checkpoint of each place, and any that disagrees
    with the chain or lies beyond its end. One that agrees proves nothing the newest does not."""
    trusted = checkpoints.trusted_public_keys()
    db_messages = {c.message for c in db_checkpoints}
    chain_end = report.head_seq or 0
    considered = [c for c in (*db_checkpoints, *file_checkpoints) if first <= c.seq and (c.seq <= last or open_end)]
    newest: dict[str, Checkpoint] = {}
    for checkpoint in considered:
        place = _place(checkpoint)
        if place not in newest or checkpoint.seq >= newest[place].seq:
            newest[place] = checkpoint
    newest_ids = {id(c) for c in newest.values()}
    beyond: dict[str, Checkpoint] = {}
    latest: Checkpoint | None = None
    for checkpoint in considered:
        chain_hash = hashes_at.get(checkpoint.seq)
        agrees = chain_hash is not None and chain_hash.hex() == checkpoint.hash
        missing = checkpoint.source != "database" and checkpoint.message not in db_messages
        if id(checkpoint) in newest_ids or not agrees or missing:
            problem = checkpoint.signature_problem(trusted)
            if problem:
                report.problems.append(Problem(checkpoint.seq, "checkpoint signature invalid", problem))
                continue
        if checkpoint.seq > chain_end:
            place = _place(checkpoint)
            if place not in beyond or checkpoint.seq > beyond[place].seq:
                beyond[place] = checkpoint
            continue
        if missing:
            report.problems.append(
                Problem(checkpoint.seq, "rewritten", f"checkpoint {checkpoint.source} is missing from the database")
            )
            continue
        if chain_hash is not None and not agrees:
            report.problems.append(
                Problem(
                    checkpoint.seq,
                    "rewritten",
                    f"the chain's hash differs from the checkpoint signed at {checkpoint.time} ({checkpoint.source})",
                )
            )
            continue
        if agrees and id(checkpoint) in newest_ids and (latest is None or checkpoint.seq >= latest.seq):
            latest = checkpoint
    for checkpoint in beyond.values():
        gone = checkpoint.seq - chain_end
        report.problems.append(
            Problem(
                chain_end + 1,
                "truncated",
                f"checkpoint at seq {checkpoint.seq} ({checkpoint.source}, signed at {checkpoint.time}) but the chain "
                f"ends at seq {chain_end}: {gone} sealed event{'s' if gone != 1 else ''} deleted",
            )
        )
    if latest is not None:
        report.checkpoint = latest
        sources = {
            "database" if c.source == "database" else "file"
            for c in (*db_checkpoints, *file_checkpoints)
            if c.message == latest.message
        }
        report.checkpoint_sources = "+".join(sorted(sources))


def _place(checkpoint: Checkpoint) -> str:
    """Where a checkpoint was read: the database, or a file (its name, without the line)."""
    return checkpoint.source.split(" line ", 1)[0]


def _uncovered_tail(report: VerifyReport) -> None:
    """Say how much of the chain no checkpoint covers yet: a truncation there would not show."""
    head, covered = report.head_seq or 0, report.checkpoint.seq if report.checkpoint else 0
    if report.problems or head <= covered:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT now() - sealed_at FROM audit_ledgerseal WHERE seq = %s", [covered + 1])
        row = cursor.fetchone()
    age = f", the oldest sealed {row[0].total_seconds():.0f} s ago" if row else ""
    report.notes.append(
        f"{head - covered} event(s) sealed after the newest checkpoint (seq {covered + 1}-{head}{age}) are not yet "
        f"covered by one; checkpoints are written every {settings.ARBITER_CHECKPOINT_EVERY_S} s by celery beat"
    )
