"""Evidence-pack exports started from the UI: `audit.export.export_pack` in a background thread, its
progress in Redis (so any web process can answer the progress poll), the pack as a zip on disk.

Progress is read from the pack being written: `export_pack` writes events.jsonl, then chain.txt, so a
watcher counts the lines written so far against the number of events the selection holds.

A thread, not a Celery task: the export must write where the web process can serve the download from.
With several web machines, put ARBITER_UI_EXPORT_DIR on shared storage (or move `_run` into a task).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import uuid
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import connection

from audit.export import export_pack
from audit.selectors import events_list
from controlplane.redis_client import get_redis

logger = logging.getLogger(__name__)

STATE_TTL_S = 24 * 3600
_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class ExportState:
    id: str
    owner: int
    filters: dict
    description: str = ""
    status: str = "counting"  # counting, events, chain, packing, done, failed
    total: int = 0
    done: int = 0
    error: str = ""
    events: int | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoint_seq: int | None = None
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")

    @property
    def percent(self) -> int:
        if self.status == "done":
            return 100
        return int(100 * self.done / self.total) if self.total else 0

    @property
    def started(self) -> str:
        return self.started_at[:19].replace("T", " ")

    @property
    def filename(self) -> str:
        return f"arbiter-evidence-{self.id[:12]}.zip"


def _key(export_id: str) -> str:
    return f"arbiter:ui:export:{export_id}"


def _save(state: ExportState) -> None:
    get_redis().set(_key(state.id), json.dumps(asdict(state)), ex=STATE_TTL_S)


def export_state(export_id: str) -> ExportState | None:
    if not _ID.match(export_id or ""):
        return None
    raw = get_redis().get(_key(export_id))
    return ExportState(**json.loads(raw)) if raw else None


def export_file(state: ExportState) -> Path | None:
    path = Path(settings.ARBITER_UI_EXPORT_DIR) / state.id / state.filename
    return path if state.status == "done" and path.is_file() else None


def export_start(
    *, user, since: datetime | None, until: datetime | None, application: str | None, description: str = ""
) -> ExportState:
    state = ExportState(
        id=uuid.uuid4().hex,
        owner=user.pk,
        description=description,
        filters={
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "application": application,
        },
    )
    _save(state)
    threading.Thread(
        target=_run, args=(state, since, until, application), name=f"export-{state.id[:8]}", daemon=True
    ).start()
    return state


def _run(state: ExportState, since: datetime | None, until: datetime | None, application: str | None) -> None:
    folder = Path(settings.ARBITER_UI_EXPORT_DIR) / state.id
    pack = folder / "pack"
    stop = threading.Event()
    try:
        state.total = events_list(application=application, since=since, until=until).filter(seal__isnull=False).count()
        state.status = "events"
        _save(state)
        watcher = threading.Thread(target=_watch, args=(state, pack, stop), daemon=True)
        watcher.start()
        result = export_pack(pack, since=since, until=until, application=application)
        stop.set()
        watcher.join()
        state.status = "packing"
        _save(state)
        with zipfile.ZipFile(folder / state.filename, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(pack.iterdir()):
                archive.write(path, arcname=path.name)
        shutil.rmtree(pack, ignore_errors=True)
        state.status, state.done = "done", state.total
        state.events, state.first_seq, state.last_seq = result.events, result.first_seq, result.last_seq
        state.checkpoint_seq = result.checkpoint_seq
    except Exception as error:
        logger.exception("evidence export %s failed", state.id)
        state.status, state.error = "failed", str(error)[:500]
        shutil.rmtree(pack, ignore_errors=True)
    finally:
        stop.set()
        _save(state)
        connection.close()


def _watch(state: ExportState, pack: Path, stop: threading.Event) -> None:
    """Count the lines written so far (events, then chain links) and publish them."""
    offsets: dict[str, int] = {}
    lines = {"events.jsonl": 0, "chain.txt": 0}
    while not stop.wait(0.25):
        for name in lines:
            path = pack / name
            if not path.exists():
                continue
            with path.open("rb") as handle:
                handle.seek(offsets.get(name, 0))
                chunk = handle.read()
                offsets[name] = offsets.get(name, 0) + len(chunk)
                lines[name] += chunk.count(b"\n")
        if (pack / "chain.txt").exists():
            state.status = "chain"
        state.done = min(lines["events.jsonl"], state.total)
        _save(state)
