"""Recomputing the chain: `verify_chain` (the whole ledger or a window) and `verify_events_for` (one job).

For every seal in seq order: the seq follows the previous one, the sealed event still exists, the
events keep their chain order (xact_id, id), SHA-256 of the record {"event":<canonical>,"seq":n}
equals the sealed digest, prev_hash equals the previous hash, and SHA-256(prev_hash ‖ digest)
equals the stored hash. Then: no unsealed event hides inside the sealed range, and every
checkpoint (database and file) carries a valid signature from a trusted key and matches the
chain at its seq — a checkpoint beyond the chain's end means the tail was truncated.

The stream is read through a server-side cursor in binary form inside one REPEATABLE READ
transaction, so all checks see one snapshot, and per event the Python work is two SHA-256 calls
and a few comparisons.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction
from tqdm import tqdm

from audit import checkpoints, sealer
from audit.checkpoints import Checkpoint

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
    *, since: datetime | int | None = None, until: datetime | int | None = None, progress: bool = False
) -> VerifyReport:
    """Verify the sealed chain, or the window [since, until] (a time or a seq) from its first prev_hash."""
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
        hashes_at = _walk(report, first, last, wanted, progress)
        if report.ok:
            _check_unsealed_inside(report, first, last)
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


def _walk(report: VerifyReport, first: int, last: int, wanted: set[int], progress: bool) -> dict[int, bytes]:
    """Stream seals first..last with their events; stop at the first broken link."""
    hashes_at: dict[int, bytes] = {}
    with connection.cursor() as cursor:
        if first == 1:
            running = GENESIS
        else:
            cursor.execute("SELECT prev_hash FROM audit_ledgerseal WHERE seq = %s", [first])
            row = cursor.fetchone()
            running = bytes(row[0]) if row else GENESIS
    before_running = None
    expected, last_key = first, (-1, -1)
    sha256 = hashlib.sha256
    connection.ensure_connection()
    bar = tqdm(
        total=last - first + 1,
        disable=not progress,
        file=sys.stderr,
        unit="ev",
        unit_scale=True,
        mininterval=0.5,
    )
    stream = connection.connection.cursor(name="ledger_verify", binary=True)
    try:
        stream.execute(
            """
            SELECT s.seq, s.prev_hash, s.event_digest, s.hash, e.id, e.xact_id, convert_to(e.canonical, 'UTF8')
              FROM audit_ledgerseal s LEFT JOIN audit_ledgerevent e ON e.id = s.event_id
             WHERE s.seq BETWEEN %s AND %s
             ORDER BY s.seq
            """,
            [first, last],
        )
        while rows := stream.fetchmany(_FETCH):
            for seq, prev_hash, digest, stored_hash, event_id, xact_id, canonical in rows:
                problem = None
                if seq != expected:
                    problem = Problem(
                        expected,
                        "deleted",
                        f"seq {expected}" + (f"-{seq - 1}" if seq - 1 > expected else "") + " missing from the chain",
                    )
                elif prev_hash != running:
                    if before_running is not None and prev_hash == before_running:
                        problem = Problem(seq - 1, "inserted", "seq before this one was not in the original chain")
                    else:
                        problem = Problem(seq, "broken link", "prev_hash does not match the hash of the previous seq")
                elif event_id is None:
                    problem = Problem(seq, "deleted", "the event sealed at this seq no longer exists")
                elif (xact_id, event_id) <= last_key:
                    problem = Problem(seq, "reordered", f"event {event_id} is out of chain order")
                else:
                    event_digest = sha256(b'{"event":%b,"seq":%d}' % (canonical, seq)).digest()
                    if event_digest != digest:
                        problem = _diagnose_digest(seq, event_id, canonical)
                    else:
                        before_running = running
                        running = sha256(running + event_digest).digest()
                        if running != stored_hash:
                            problem = Problem(seq, "edited", "the seal row was altered (stored hash differs)")
                if problem is not None:
                    report.problems.append(problem)
                    return hashes_at
                if seq in wanted:
                    hashes_at[seq] = running
                last_key = (xact_id, event_id)
                expected += 1
            report.events_verified += len(rows)
            bar.update(len(rows))
    finally:
        stream.close()
        bar.close()
    if expected <= last:
        report.problems.append(Problem(expected, "deleted", f"seq {expected}-{last} missing from the chain"))
        return hashes_at
    report.first_seq, report.last_seq = first, last
    return hashes_at


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


def _check_unsealed_inside(report: VerifyReport, first: int, last: int) -> None:
    """Every event in the sealed range's chain order must be sealed; an extra one was inserted."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT e.xact_id, e.id FROM audit_ledgerseal s JOIN audit_ledgerevent e ON e.id = s.event_id "
            "WHERE s.seq IN (%s, %s) ORDER BY s.seq",
            [first, last],
        )
        bounds = cursor.fetchall()
        (x1, id1), (x2, id2) = bounds[0], bounds[-1]
        cursor.execute(
            "SELECT count(*) FROM audit_ledgerevent WHERE (xact_id, id) >= (%s, %s) AND (xact_id, id) <= (%s, %s)",
            [x1, id1, x2, id2],
        )
        count = cursor.fetchone()[0]
        if count == last - first + 1:
            return
        cursor.execute(
            """
            SELECT e.id, (SELECT min(s.seq) FROM audit_ledgerseal s JOIN audit_ledgerevent f ON f.id = s.event_id
                           WHERE (f.xact_id, f.id) > (e.xact_id, e.id))
              FROM audit_ledgerevent e
             WHERE (e.xact_id, e.id) >= (%s, %s) AND (e.xact_id, e.id) <= (%s, %s)
               AND NOT EXISTS (SELECT 1 FROM audit_ledgerseal s WHERE s.event_id = e.id)
             ORDER BY e.xact_id, e.id LIMIT 1
            """,
            [x1, id1, x2, id2],
        )
        row = cursor.fetchone()
    if row:
        event_id, next_seq = row
        report.problems.append(
            Problem(
                next_seq,
                "inserted",
                f"event {event_id} sits before seq {next_seq} in chain order but is unsealed",
            )
        )


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
