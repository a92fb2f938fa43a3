"""Erase personal data: one job, one application's jobs, or every job that mentions a data subject."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.ledger import Actor
from routing import selectors
from routing.models import Job
from routing.services.erasure import ErasureError, ErasureReason, erasure_apply, erasure_select


class Command(BaseCommand):
    help = (
        "Erase the raw content of jobs (prompt, answers, reviewers' edits, labels, metadata, stored payloads) "
        "by --job ID, --application SLUG or --subject IDENTIFIER (every job whose content mentions it, "
        "case-insensitively; with --application, only that application's). Replays of an erased job are "
        "erased too. Digests, tiers and costs stay, and the ledger still verifies. --dry-run lists what "
        "would be erased and changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--job", help="the job's id")
        parser.add_argument("--application", help="the application's slug")
        parser.add_argument("--subject", help="a data subject's identifier: an e-mail address, a phone number...")
        parser.add_argument("--reason", choices=ErasureReason.values, required=True)
        parser.add_argument("--reference", default="", help="e.g. the request's ticket number (redacted)")
        parser.add_argument("--dry-run", action="store_true", help="list what would be erased; change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            selection = erasure_select(
                job=self._job(options["job"]),
                application=self._application(options["application"]),
                identifier=options["subject"],
            )
        except ErasureError as error:
            raise CommandError(str(error)) from None
        jobs = selection.preview(limit=len(selection.job_ids))
        for job in jobs:
            self.stdout.write(f"{job.pk}  {job.application.slug}  {job.created_at:%Y-%m-%d %H:%M}  {job.status}")
        outside = len(selection.payload_digests)
        extra = f" and {outside} stored content(s) outside them" if outside else ""
        if options["dry_run"]:
            self.stdout.write(f"would erase {len(jobs)} job(s){extra} (dry run: nothing changed)")
            return
        try:
            outcome = erasure_apply(
                selection=selection,
                actor=Actor.system("erase-command"),
                reason=options["reason"],
                reference=options["reference"],
            )
        except ErasureError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(self.style.SUCCESS(f"erased {outcome.jobs} job(s) and {outcome.payloads} stored content(s)"))

    def _job(self, job_id: str | None) -> Job | None:
        if job_id is None:
            return None
        try:
            uuid.UUID(job_id)
        except ValueError:
            raise CommandError(f"--job {job_id[:80]!r} is not a job id (a UUID)") from None
        job = Job.objects.filter(pk=job_id).first()
        if job is None:
            raise CommandError(f"no job {job_id}")
        return job

    def _application(self, slug: str | None):
        if slug is None:
            return None
        application = selectors.application_get(slug=slug)
        if application is None:
            raise CommandError(f"no application {slug[:80]!r}")
        return application
