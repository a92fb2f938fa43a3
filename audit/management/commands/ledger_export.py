"""manage.py ledger_export --out DIR|FILE.zip [--since T] [--until T] [--application A] [--job J]
[--policy-version P] [--progress] — write an evidence pack (see audit/EVIDENCE.md)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.export import export_pack
from audit.ledger import LedgerError
from audit.management.commands._options import show_progress, window_point


class Command(BaseCommand):
    help = "Export an evidence pack (JSON Lines, CSV, chain digests, checkpoint, manifest) for re-verification."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--out", required=True, help="a new directory, or a path ending in .zip")
        parser.add_argument("--since", help="ISO date/time, inclusive")
        parser.add_argument("--until", help="ISO date/time, exclusive")
        parser.add_argument("--application")
        parser.add_argument("--job")
        parser.add_argument("--policy-version")
        parser.add_argument("--progress", action="store_true", help="show a progress bar even without a TTY")

    def handle(self, *args, **options) -> None:
        try:
            result = export_pack(
                Path(options["out"]),
                since=window_point(options["since"], allow_seq=False),
                until=window_point(options["until"], allow_seq=False),
                application=options["application"],
                job=options["job"],
                policy_version=options["policy_version"],
                progress=show_progress(options),
            )
        except LedgerError as error:
            raise CommandError(str(error)) from None
        span = f"seq {result.first_seq}-{result.last_seq}"
        kind = "contiguous window" if result.contiguous else "filtered (not contiguous)"
        self.stdout.write(
            f"exported {result.events} events ({span}, {kind}) covered by checkpoint seq {result.checkpoint_seq} "
            f"to {result.path}"
        )
