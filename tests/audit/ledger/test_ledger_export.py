"""Evidence packs re-verify with the documented, standard-library-only procedure."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import zipfile
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction

from audit import ledger
from audit.export import neutralise_cell
from audit.ledger import Actor
from tests.audit.ledger.ledger_helpers import append_committed, committed_db

pytestmark = committed_db
EVIDENCE = Path(__file__).resolve().parents[3] / "audit" / "EVIDENCE.md"


@pytest.fixture(scope="module")
def verifier(tmp_path_factory) -> Path:
    """The verifier exactly as printed in audit/EVIDENCE.md."""
    code = re.search(r"```python verify_pack\.py\n(.*?)```", EVIDENCE.read_text(), re.DOTALL).group(1)
    assert len(code.strip().splitlines()) <= 22
    path = tmp_path_factory.mktemp("doc") / "verify_pack.py"
    path.write_text(code)
    return path


def _run(verifier: Path, pack: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(verifier), str(pack)], capture_output=True, text=True, timeout=30)


def _export(tmp_path: Path, name: str, **options) -> Path:
    out = StringIO()
    call_command("ledger_export", out=str(tmp_path / name), stdout=out, **options)
    return tmp_path / name


def test_a_window_pack_reverifies_and_one_changed_byte_fails(tmp_path, verifier):
    append_committed(6, job="job-a", application="app-1")
    append_committed(4, job="job-b", application="app-2")
    pack = _export(tmp_path, "pack")

    result = _run(verifier, pack)
    assert result.returncode == 0, result.stderr
    assert "ok: 10 events verified, checkpoint seq 10" in result.stdout
    manifest = json.loads((pack / "manifest.json").read_text())
    assert manifest["contiguous"] is True
    assert (manifest["first_seq"], manifest["last_seq"], manifest["counts"]["events"]) == (1, 10, 10)
    assert set(manifest["files"]) == {
        "events.jsonl",
        "events.csv",
        "chain.txt",
        "checkpoint.msg",
        "checkpoint.sig",
        "checkpoint.pem",
    }

    for name in ("events.jsonl", "chain.txt"):
        tampered = tmp_path / f"tampered-{name}"
        shutil.copytree(pack, tampered)
        data = bytearray((tampered / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (tampered / name).write_bytes(bytes(data))
        result = _run(verifier, tampered)
        assert result.returncode != 0
        assert "FAILED" in result.stderr


def test_a_changed_event_fails_even_with_a_fixed_up_manifest(tmp_path, verifier):
    append_committed(3)
    pack = _export(tmp_path, "pack")
    events = pack / "events.jsonl"
    events.write_text(events.read_text().replace('\\"index\\":1', '\\"index\\":7'))
    manifest = json.loads((pack / "manifest.json").read_text())
    import hashlib

    manifest["files"]["events.jsonl"] = hashlib.sha256(events.read_bytes()).hexdigest()
    (pack / "manifest.json").write_text(json.dumps(manifest))
    result = _run(verifier, pack)
    assert result.returncode != 0
    assert "FAILED" in result.stderr and "event seq 2" in result.stderr


def test_a_filtered_pack_proves_its_events_against_the_checkpoint(tmp_path, verifier):
    append_committed(3, job="job-a", application="app-1")
    append_committed(3, job="job-b", application="app-2")
    append_committed(2, job="job-c", application="app-1")
    pack = _export(tmp_path, "app-1.zip", application="app-1")
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(pack) as archive:
        archive.extractall(unpacked)

    result = _run(verifier, unpacked)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((unpacked / "manifest.json").read_text())
    assert manifest["contiguous"] is False
    assert manifest["counts"] == {"events": 5, "chain": 8}
    lines = [json.loads(line) for line in (unpacked / "events.jsonl").read_text().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 7, 8]
    assert all('"application":"app-1"' in line["canonical"] for line in lines)
    # The other application's events are present only as digests.
    assert "app-2" not in (unpacked / "chain.txt").read_text()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_the_checkpoint_signature_checks_with_openssl(tmp_path):
    append_committed(2)
    pack = _export(tmp_path, "pack")
    command = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "checkpoint.pem", "-rawin"]
    good = subprocess.run(
        [*command, "-in", "checkpoint.msg", "-sigfile", "checkpoint.sig"],
        cwd=pack,
        capture_output=True,
        text=True,
    )
    assert "Signature Verified Successfully" in good.stdout
    (pack / "forged.msg").write_bytes((pack / "checkpoint.msg").read_bytes().replace(b'"seq":2', b'"seq":3'))
    bad = subprocess.run(
        [*command, "-in", "forged.msg", "-sigfile", "checkpoint.sig"],
        cwd=pack,
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0


def test_csv_cells_that_look_like_formulas_are_neutralised(tmp_path):
    with transaction.atomic():
        ledger.append(
            "approval.decided",
            actor=Actor.user('=HYPERLINK("http://evil")'),
            subject={"job": "+1+1", "application": "@SUM(A1)"},
            body={"reason": "ok"},
        )
    pack = _export(tmp_path, "pack")
    with (pack / "events.csv").open(newline="") as table:
        row = next(csv.DictReader(table))
    assert row["actor_id"] == '\'=HYPERLINK("http://evil")'
    assert row["job"] == "'+1+1"
    assert row["application"] == "'@SUM(A1)"
    assert row["type"] == "approval.decided"
    assert [neutralise_cell(v) for v in ("-2", "\tx", "\rx", "plain", "")] == [
        "'-2",
        "'\tx",
        "'\rx",
        "plain",
        "",
    ]


def test_an_empty_selection_is_refused_clearly(tmp_path):
    from django.core.management import CommandError

    append_committed(2, application="app-1")
    with pytest.raises(CommandError, match="no sealed event matches"):
        call_command("ledger_export", out=str(tmp_path / "pack"), application="nobody", stdout=StringIO())
    assert not (tmp_path / "pack").exists()
