"""manage.py ledger_verify [--since X] [--until Y] [--progress] [--workers N] [--witness-file F ...] — exit 0
when intact, 1 when not."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.management.commands._options import show_progress, window_point
from audit.verify import verify_chain


class Command(BaseCommand):
    help = "Recompute the ledger's hash chain and check it against the signed checkpoints (database and file)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--since", help="first seq, or an ISO date/time (verifies from that event's prev_hash)")
        parser.add_argument("--until", help="last seq (inclusive), or an ISO date/time (exclusive)")
        parser.add_argument("--progress", action="store_true", help="show a progress bar even without a TTY")
        parser.add_argument(
            "--witness-file",
            action="append",
            default=[],
            type=Path,
            help="checkpoints a witness kept (JSON Lines, as the checkpoint file); repeatable",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=min(4, os.cpu_count() or 1),
            help="processes for long chains (default: CPUs, at most 4)",
        )

    def handle(self, *args, **options) -> None:
        missing = [str(path) for path in options["witness_file"] if not path.is_file()]
        if missing:
            raise CommandError(f"no witness file {', '.join(missing)}")
        report = verify_chain(
            since=window_point(options["since"]),
            until=window_point(options["until"]),
            progress=show_progress(options),
            workers=max(1, options["workers"]),
            witness_files=options["witness_file"],
        )
        for note in report.notes:
            self.stderr.write(f"note: {note}")
        if not report.ok:
            self.stderr.write(report.summary())
            for problem in sorted(report.problems, key=lambda p: p.seq)[1:]:
                self.stderr.write(f"  also {problem}")
            raise SystemExit(1)
        self.stdout.write(report.summary())
