"""Issue 16, item 5: checkpoints every few seconds (from celery beat), to the file and a witness, so that
a superuser's truncation of the newest events shows in `ledger_verify` unless it came within seconds."""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from audit import checkpoints, sealer, witness
from audit.checkpointer import Checkpointer
from audit.models import LedgerCheckpoint, LedgerSeal
from audit.witness import Witness
from tests.audit.ledger.conftest import TEST_SEED
from tests.audit.ledger.ledger_helpers import append_committed, attacker, committed_db
from tests.support.workers import BASE_DIR, database_url_for_workers

pytestmark = committed_db

DEADLINE_S = 60.0
WITNESS_PORT = 8871  # this helper's port range (8800-8899)


def wait_for(condition: Callable[[], object], what: str, deadline: float = DEADLINE_S) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline:g} s: {what}")
        time.sleep(0.05)


def file_seqs(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [json.loads(json.loads(line)["message"])["seq"] for line in path.read_text().splitlines() if line]


def verify(*args: str) -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("ledger_verify", "--workers", "1", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return exit_.code, err.getvalue()
    return 0, out.getvalue() + err.getvalue()


@pytest.fixture
def running() -> Iterator[Callable[..., Checkpointer]]:
    started: list[Checkpointer] = []

    def start(**kwargs) -> Checkpointer:
        started.append(Checkpointer(every=kwargs.pop("every", 1), **kwargs).start())
        return started[-1]

    yield start
    for checkpointer in started:
        checkpointer.stop()


def test_the_newest_events_are_signed_within_seconds_and_their_truncation_names_the_checkpoint(running, settings):
    checkpointer = running(every=1)
    append_committed(12)
    wait_for(lambda: file_seqs(settings.ARBITER_CHECKPOINT_FILE)[-1:] == [12], "a checkpoint of seq 12 in the file")
    checkpointer.stop()
    # How long the newest event stayed uncovered: from its seal to the checkpoint that signed it.
    sealed_at = LedgerSeal.objects.get(seq=12).sealed_at
    covered_at = LedgerCheckpoint.objects.filter(seq__gte=12).order_by("seq").first().created_at
    assert (covered_at - sealed_at).total_seconds() < 10

    # A superuser deletes the three newest events with their seals and every checkpoint row.
    with attacker() as sql:
        sql.execute("DELETE FROM audit_ledgercheckpoint")
        sql.execute("DELETE FROM audit_ledgerevent WHERE id IN (SELECT event_id FROM audit_ledgerseal WHERE seq > 9)")
        sql.execute("DELETE FROM audit_ledgerseal WHERE seq > 9")
    code, output = verify()
    assert code == 1
    line = len(file_seqs(settings.ARBITER_CHECKPOINT_FILE))
    signed = json.loads(json.loads(settings.ARBITER_CHECKPOINT_FILE.read_text().splitlines()[-1])["message"])["time"]
    assert (
        f"ledger NOT intact at seq 10: truncated — checkpoint at seq 12 (checkpoints.jsonl line {line}, signed at "
        f"{signed}) but the chain ends at seq 9: 3 sealed events deleted"
    ) in output


def test_an_idle_ledger_gets_no_new_checkpoints_and_verify_says_what_is_not_covered_yet(settings):
    append_committed(3)
    checkpointer = Checkpointer(every=1)
    assert checkpointer.tick().seq == 3
    assert checkpointer.tick() is None  # the head did not move
    append_committed(2)
    code, output = verify()
    assert code == 0, output
    assert "last checkpoint seq 3" in output
    assert "2 event(s) sealed after the newest checkpoint (seq 4-5" in output
    assert checkpointer.tick().seq == 5
    code, output = verify()
    assert code == 0 and "not yet covered" not in output


def test_a_rewrite_resigned_with_a_stolen_key_passes_without_a_witness_and_fails_with_one(running, settings, tmp_path):
    """What EVIDENCE.md says: with the key beside the data, only a copy out of reach catches a full rewrite."""
    kept = tmp_path / "witness.jsonl"
    checkpointer = running(every=1, witness=Witness(f"sh -c {shlex.quote(f'cat >> {kept}')}", timeout=10))
    events = append_committed(6)
    wait_for(lambda: file_seqs(kept)[-1:] == [6], "the witness holds a checkpoint of seq 6")
    checkpointer.stop()

    # The attacker edits an event, reseals the chain, re-signs it and rewrites the local checkpoint file.
    with attacker() as sql:
        sql.execute("DELETE FROM audit_ledgercheckpoint")
        sql.execute("DELETE FROM audit_ledgerseal")
        sql.execute(
            "UPDATE audit_ledgerevent SET canonical = replace(canonical, '\"index\":2,', '\"index\":20,') "
            "WHERE id = %s",
            [events[2].pk],
        )
    assert sealer.seal_pending() == 6
    settings.ARBITER_CHECKPOINT_FILE.unlink()
    assert checkpoints.checkpoint_write().seq == 6

    code, output = verify()
    assert code == 0, output  # the signing key vouches for the rewrite
    code, output = verify("--witness-file", str(kept))
    assert code == 1
    assert "at seq 6: rewritten" in output and "witness.jsonl" in output


def test_a_failing_witness_never_holds_back_checkpoints_and_gets_the_newest_once_it_is_back(
    running, settings, tmp_path, caplog, monkeypatch
):
    monkeypatch.setattr(witness, "BACKOFF_MAX_S", 1.0)
    down, kept = tmp_path / "down", tmp_path / "witness.jsonl"
    down.touch()
    command = f"sh -c {shlex.quote(f'test ! -e {down} && cat >> {kept}')}"
    caplog.set_level(logging.WARNING, logger="audit.witness")
    running(every=1, witness=Witness(command, timeout=10))
    append_committed(2)
    wait_for(lambda: file_seqs(settings.ARBITER_CHECKPOINT_FILE)[-1:] == [2], "checkpoint seq 2 in the file")
    append_committed(2)
    wait_for(lambda: file_seqs(settings.ARBITER_CHECKPOINT_FILE)[-1:] == [4], "checkpoint seq 4 in the file")
    wait_for(lambda: "checkpoint not delivered" in caplog.text, "the failure logged")
    assert not kept.exists()
    assert any(record.levelno == logging.ERROR for record in caplog.records)

    down.unlink()
    wait_for(lambda: file_seqs(kept)[-1:] == [4], "the newest checkpoint delivered once the witness is back")
    wait_for(lambda: "delivering again" in caplog.text, "the recovery logged")


def test_a_url_witness_receives_each_checkpoint_as_a_json_post(running):
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"type": self.headers["Content-Type"], "record": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", WITNESS_PORT), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        running(every=1, witness=Witness(f"http://127.0.0.1:{WITNESS_PORT}/checkpoints", timeout=5))
        append_committed(3)
        wait_for(lambda: received and json.loads(received[-1]["record"]["message"])["seq"] == 3, "a POST of seq 3")
    finally:
        server.shutdown()
        server.server_close()
    record = received[-1]
    assert record["type"] == "application/json"
    [row] = LedgerCheckpoint.objects.filter(seq=3)
    assert record["record"] == {"message": row.message, "signature": row.signature, "public_key": row.public_key}


def test_a_witness_that_hangs_is_cut_off_at_its_timeout():
    with pytest.raises(witness.WitnessError, match=r"did not finish within 0\.5 s"):
        witness.deliver("sleep 30", b"{}\n", timeout=0.5)
    with pytest.raises(witness.WitnessError, match="exited with 3: no space"):
        witness.deliver("sh -c 'echo no space >&2; exit 3'", b"{}\n", timeout=5)


def test_celery_beat_runs_the_checkpointer(settings, tmp_path):
    """The wiring: `celery beat` starts the loop (beat_init), and it signs the head within seconds."""
    append_committed(4)
    checkpoint_file = tmp_path / "beat-checkpoints.jsonl"
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_workers(),
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "ARBITER_LEDGER_SIGNING_KEY": TEST_SEED,
        "ARBITER_CHECKPOINT_FILE": str(checkpoint_file),
        "ARBITER_CHECKPOINT_EVERY_S": "1",
        "ARBITER_QUEUE": f"arbiter-beat-test-{os.getpid()}",  # the tasks beat sends go nowhere that matters
    }
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "controlplane", "beat", "--loglevel", "WARNING",
         "--schedule", str(tmp_path / "celerybeat-schedule")],
        cwd=BASE_DIR, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: file_seqs(checkpoint_file)[-1:] == [4], "beat's checkpoint of seq 4")
        append_committed(1)
        wait_for(lambda: file_seqs(checkpoint_file)[-1:] == [5], "beat's checkpoint of seq 5")
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(timeout=30)
        _drop_the_queue(env["ARBITER_QUEUE"])
    connection.close()


def _drop_the_queue(queue: str) -> None:
    from controlplane.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)
