"""Evidence packs: the events of a time window, an application, a job or a policy version, in a form a
third party can re-verify with the standard library alone (the procedure is audit/EVIDENCE.md).

    events.jsonl      one sealed event a line: seq, prev_hash, hash and `canonical`, the exact hashed text
    events.csv        the same events for reading (formula-looking cells neutralised)
    chain.txt         "<seq> <event digest>" for every seq from the first exported event to the checkpoint,
                      so each exported event is proven to sit in the signed chain without revealing
                      the other events (their digests only)
    checkpoint.msg    the covering checkpoint's signed bytes; checkpoint.sig (raw Ed25519 signature)
    checkpoint.pem    and its public key, for `openssl pkeyutl -verify`
    manifest.json     filters, counts, first/last seq, the checkpoint, SHA-256 of every other file

A pack without subject filters is contiguous (every seq of the window is in it); a filtered pack
proves each of its events and their place in the chain, but not that no other event of the subject
exists (the omitted events are digests only).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.db import connection
from tqdm import tqdm

from audit import checkpoints, sealer, verify
from audit.checkpoints import Checkpoint
from audit.ledger import LedgerError
from audit.models import SUBJECT_KEYS

FORMAT = "arbiter-evidence/1"
CSV_COLUMNS = ["seq", "time", "type", "actor_kind", "actor_id", *SUBJECT_KEYS, "body", "hash"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FETCH = 5000


@dataclass(frozen=True)
class ExportResult:
    path: Path
    events: int
    first_seq: int
    last_seq: int
    checkpoint_seq: int
    contiguous: bool


def export_pack(
    out: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    application: str | None = None,
    job: str | None = None,
    policy_version: str | None = None,
    progress: bool = False,
) -> ExportResult:
    """Write a pack to the directory `out` (or a .zip when `out` ends in .zip)."""
    out = Path(out)
    subjects = {
        key: str(value)
        for key, value in (("application", application), ("job", job), ("policy_version", policy_version))
        if value is not None
    }
    # Seal and sign the head first, so that every event sealed so far has a covering checkpoint.
    checkpoints.checkpoint_write()
    work = Path(tempfile.mkdtemp(prefix="arbiter-evidence-")) if out.suffix == ".zip" else out
    work.mkdir(parents=True, exist_ok=True)
    if any(work.iterdir()):
        raise LedgerError(f"{work} is not empty; export into a new directory")
    try:
        with verify.one_snapshot():
            selection, params = _selection(since, until, subjects)
            first, last, count = _bounds(selection, params)
            if not count or first is None or last is None:
                raise LedgerError("no sealed event matches these filters: there is nothing to prove")
            checkpoint = checkpoints.covering_checkpoint(last)
            if checkpoint is None:
                raise LedgerError(f"no trusted checkpoint covers seq {last}; run manage.py ledger_checkpoint")
            bar = tqdm(total=count, disable=not progress, file=sys.stderr, unit="ev", desc="events")
            with bar:
                _write_events(work, selection, params, bar)
            chain = _write_chain(work, first, checkpoint.seq, progress)
        manifest = {
            "format": FORMAT,
            "procedure": "audit/EVIDENCE.md",
            "ledger": checkpoints.ledger_name(),
            "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "filters": {
                "since": since.isoformat() if since else None,
                "until": until.isoformat() if until else None,
                **{key: subjects.get(key) for key in ("application", "job", "policy_version")},
            },
            "contiguous": not subjects,
            "counts": {"events": count, "chain": chain["links"]},
            "first_seq": first,
            "last_seq": last,
            "chain": {"first_seq": first, "prev_hash": chain["prev_hash"]},
            "checkpoint": _checkpoint_files(work, checkpoint),
            "files": {path.name: _sha256_file(path) for path in sorted(work.iterdir())},
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if out.suffix == ".zip":
            _zip(work, out)
    except LedgerError:
        if work.exists() and not any(work.iterdir()):
            work.rmdir()
        raise
    finally:
        if work is not out:
            shutil.rmtree(work, ignore_errors=True)
    return ExportResult(out, count, first, last, checkpoint.seq, not subjects)


def neutralise_cell(value: str) -> str:
    """Spreadsheets run cells starting with = + - @ (or a tab/CR) as formulas; make them text."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _selection(since: datetime | None, until: datetime | None, subjects: dict[str, str]) -> tuple[str, list[object]]:
    """SQL conditions on (s seal, e event) for the pack's events."""
    if not subjects:
        head = sealer.chain_head()
        first, last = verify.resolve_window(since, until, head.seq if head else 0)
        return "s.seq BETWEEN %s AND %s", [first, last]
    conditions: list[str] = []
    params: list[object] = []
    for key, value in subjects.items():
        conditions.append(f"e.subject_{key} = %s")
        params.append(value)
    if since is not None:
        conditions.append("e.created_at >= %s")
        params.append(since)
    if until is not None:
        conditions.append("e.created_at < %s")
        params.append(until)
    return " AND ".join(conditions), params


def _bounds(selection: str, params: list) -> tuple[int | None, int | None, int]:
    with connection.cursor() as cursor:
        # `selection` is built from fixed fragments by _selection; values travel as parameters.
        sql = "SELECT min(s.seq), max(s.seq), count(*) FROM audit_ledgerseal s JOIN audit_ledgerevent e "
        cursor.execute(sql + f"ON e.id = s.event_id WHERE {selection}", params)
        return cursor.fetchone()


def _write_events(work: Path, selection: str, params: list, bar: tqdm) -> None:
    connection.ensure_connection()
    stream = connection.connection.cursor(name="ledger_export_events", binary=True)
    with (
        (work / "events.jsonl").open("w", encoding="utf-8", newline="\n") as jsonl,
        (work / "events.csv").open("w", encoding="utf-8", newline="") as csv_file,
    ):
        table = csv.writer(csv_file)
        table.writerow(CSV_COLUMNS)
        try:
            sql = "SELECT s.seq, s.prev_hash, s.hash, e.canonical FROM audit_ledgerseal s JOIN audit_ledgerevent e "
            stream.execute(sql + f"ON e.id = s.event_id WHERE {selection} ORDER BY s.seq", params)
            while rows := stream.fetchmany(_FETCH):
                for seq, prev_hash, stored_hash, canonical in rows:
                    line = {"seq": seq, "prev_hash": prev_hash.hex(), "hash": stored_hash.hex(), "canonical": canonical}
                    jsonl.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
                    table.writerow(_csv_row(seq, canonical, stored_hash.hex()))
                bar.update(len(rows))
        finally:
            stream.close()


def _csv_row(seq: int, canonical: str, hash_hex: str) -> list[str]:
    document = json.loads(canonical)
    subject = document["subject"]
    cells = [
        str(seq),
        document["time"],
        document["type"],
        document["actor"]["kind"],
        document["actor"]["id"],
        *(subject.get(key, "") for key in SUBJECT_KEYS),
        json.dumps(document["body"], ensure_ascii=False, sort_keys=True, separators=(",", ":")),
        hash_hex,
    ]
    return [neutralise_cell(cell) for cell in cells]


def _write_chain(work: Path, first: int, last: int, progress: bool) -> dict:
    links = 0
    with (work / "chain.txt").open("w", encoding="ascii", newline="\n") as chain:
        with connection.cursor() as cursor:
            cursor.execute("SELECT prev_hash FROM audit_ledgerseal WHERE seq = %s", [first])
            prev_hash = bytes(cursor.fetchone()[0]).hex()
        stream = connection.connection.cursor(name="ledger_export_chain", binary=True)
        bar = tqdm(total=last - first + 1, disable=not progress, file=sys.stderr, unit="seq", desc="chain")
        try:
            stream.execute(
                "SELECT seq, event_digest FROM audit_ledgerseal WHERE seq BETWEEN %s AND %s ORDER BY seq",
                [first, last],
            )
            while rows := stream.fetchmany(_FETCH * 4):
                chain.write("".join(f"{seq} {digest.hex()}\n" for seq, digest in rows))
                links += len(rows)
                bar.update(len(rows))
        finally:
            stream.close()
            bar.close()
    return {"links": links, "prev_hash": prev_hash}


def _checkpoint_files(work: Path, checkpoint: Checkpoint) -> dict:
    (work / "checkpoint.msg").write_bytes(checkpoint.message.encode("utf-8"))
    (work / "checkpoint.sig").write_bytes(base64.b64decode(checkpoint.signature))
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(checkpoint.public_key))
    (work / "checkpoint.pem").write_bytes(public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return {
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "time": checkpoint.time,
        "public_key": checkpoint.public_key,
        "signature": checkpoint.signature,
        "message": checkpoint.message,
    }


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _zip(work: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(work.iterdir()):
            archive.write(path, arcname=path.name)
