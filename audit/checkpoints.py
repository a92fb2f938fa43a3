"""Signed checkpoints of the chain head, kept in the database and appended to a file outside it.

A checkpoint signs the canonical JSON {"hash": <hex>, "ledger": <database name>, "seq": n,
"time": <UTC>} with Ed25519. Its public key is stored with it, but a checkpoint only counts when
that key is trusted: the configured signing key's own public key, or one listed in
ARBITER_LEDGER_TRUSTED_PUBLIC_KEYS (keys retired by a rotation). The file (JSON Lines) catches
what the database alone cannot: a rewrite of the chain together with its checkpoint rows, or a
truncation that also deleted them.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction

from audit import sealer
from audit.ledger import canonical_json, format_time
from audit.models import LedgerCheckpoint

DEV_KEY_NAME = "ledger-signing.key"


@dataclass(frozen=True)
class Checkpoint:
    message: str
    signature: str
    public_key: str
    source: str  # "database" or "file line N"

    @functools.cached_property
    def fields(self) -> dict:
        return json.loads(self.message)

    @property
    def seq(self) -> int:
        return self.fields["seq"]

    @property
    def hash(self) -> str:
        return self.fields["hash"]

    @property
    def time(self) -> str:
        return self.fields["time"]

    @property
    def ledger(self) -> str:
        return self.fields["ledger"]

    def signature_problem(self, trusted: set[str]) -> str | None:
        """None when the signature is valid and made by a trusted key, else what is wrong."""
        if self.public_key not in trusted:
            return f"checkpoint at seq {self.seq} ({self.source}) is signed by an untrusted key {self.public_key}"
        if not signature_valid(self.message, self.signature, self.public_key):
            return f"checkpoint at seq {self.seq} ({self.source}): signature invalid"
        return None

    def as_dict(self) -> dict:
        return {"message": self.message, "signature": self.signature, "public_key": self.public_key}

    def line(self) -> bytes:
        """The checkpoint as the file and the witness keep it: one JSON line."""
        return (json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")


def checkpoint_write(*, force: bool = False, wait: bool = True) -> Checkpoint | None:
    """Seal what is pending, then sign the chain head; None when there is nothing new to sign.

    With `wait=False` (the every-few-seconds checkpointer) the seal is skipped when another sealer is
    at work, and what is sealed is signed."""
    sealer.seal_pending(wait=wait)
    head = sealer.chain_head()
    if head is None:
        return None
    latest = LedgerCheckpoint.objects.order_by("-seq", "-id").first()
    if latest is not None and latest.seq >= head.seq and not force:
        return None
    message = canonical_json(
        {
            "hash": head.hash.hex(),
            "ledger": ledger_name(),
            "seq": head.seq,
            "time": format_time(datetime.now(UTC)),
        }
    )
    signature, public_key = sign(message)
    checkpoint = Checkpoint(message=message, signature=signature, public_key=public_key, source="database")
    with transaction.atomic():
        LedgerCheckpoint.objects.create(
            message=checkpoint.message, signature=checkpoint.signature, public_key=checkpoint.public_key
        )
    # After commit: a file line is never written for a checkpoint the database does not hold.
    _append_to_file(checkpoint)
    return checkpoint


def database_checkpoints() -> list[Checkpoint]:
    return [
        Checkpoint(message=row.message, signature=row.signature, public_key=row.public_key, source="database")
        for row in LedgerCheckpoint.objects.order_by("seq", "id")
    ]


def file_checkpoints(path: Path | None = None) -> tuple[list[Checkpoint], list[str]]:
    """This ledger's checkpoints from the file (or from `path`: a witness's copy), and the problems met
    reading it."""
    path = Path(path or settings.ARBITER_CHECKPOINT_FILE)
    if not path.exists():
        return [], []
    checkpoints, problems = [], []
    name = ledger_name()
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                checkpoint = Checkpoint(
                    message=record["message"],
                    signature=record["signature"],
                    public_key=record["public_key"],
                    source=f"{path.name} line {number}",
                )
                belongs = checkpoint.ledger == name
                int(checkpoint.seq)
            except (ValueError, KeyError, TypeError):
                problems.append(f"{path.name} line {number} is not a readable checkpoint")
                continue
            if belongs:
                checkpoints.append(checkpoint)
    return checkpoints, problems


def covering_checkpoint(seq: int) -> Checkpoint | None:
    """The earliest trusted database checkpoint at or after `seq`."""
    trusted = trusted_public_keys()
    for row in LedgerCheckpoint.objects.filter(seq__gte=seq).order_by("seq", "id")[:20]:
        checkpoint = Checkpoint(row.message, row.signature, row.public_key, "database")
        if checkpoint.signature_problem(trusted) is None:
            return checkpoint
    return None


def ledger_name() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        return cursor.fetchone()[0]


def sign(message: str) -> tuple[str, str]:
    """(signature, public key), both base64, of the UTF-8 bytes of `message` under the ledger's key: what
    signs checkpoints also signs approval grants (routing.services.grants), so one key is trusted, rotated
    and published (`ledger_checkpoint --public-key`) for both."""
    signature = signing_key().sign(message.encode("utf-8"))
    return base64.b64encode(signature).decode("ascii"), public_key_b64()


def signature_valid(message: str, signature: str, public_key: str) -> bool:
    """Whether `signature` (base64) is `public_key`'s (base64, raw 32 bytes) over the UTF-8 of `message`.
    Whether that key is trusted is the caller's question (trusted_public_keys)."""
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
        public.verify(base64.b64decode(signature, validate=True), message.encode("utf-8"))
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def signing_key() -> Ed25519PrivateKey:
    return _signing_key(settings.ARBITER_LEDGER_SIGNING_KEY, str(settings.DATA_DIR))


def public_key_b64() -> str:
    raw = signing_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def public_key_pem() -> str:
    return signing_key().public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def trusted_public_keys() -> set[str]:
    return {public_key_b64(), *settings.ARBITER_LEDGER_TRUSTED_PUBLIC_KEYS}


@functools.lru_cache(maxsize=4)
def _signing_key(configured: str | None, data_dir: str) -> Ed25519PrivateKey:
    if configured:
        return _key_from_b64(configured, "ARBITER_LEDGER_SIGNING_KEY")
    # Development only (production refuses to start without the setting): one key per data dir.
    path = Path(data_dir) / DEV_KEY_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _key_from_b64(path.read_text().strip(), str(path))
    with os.fdopen(descriptor, "w") as key_file:
        key_file.write(base64.b64encode(os.urandom(32)).decode("ascii") + "\n")
    return _key_from_b64(path.read_text().strip(), str(path))


def _key_from_b64(text: str, origin: str) -> Ed25519PrivateKey:
    try:
        seed = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ImproperlyConfigured(f"{origin} is not base64 (expected the 32-byte Ed25519 seed)") from None
    if len(seed) != 32:
        raise ImproperlyConfigured(f"{origin} decodes to {len(seed)} bytes; an Ed25519 seed is 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def _append_to_file(checkpoint: Checkpoint) -> None:
    path = Path(settings.ARBITER_CHECKPOINT_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = checkpoint.line()
    # One write() with O_APPEND: concurrent writers never interleave within a line.
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
