"""Opening and joining runs. A call names its run by id (`x-arbiter-run-id`, or `run_id` on the jobs API):
`new` opens one with a fresh id; an id of this application's run joins it; an id nobody uses opens a run
with that id (so an agent can choose its run's id before its first call); an id of another application's
run is not found, exactly like one that cannot exist: a run is never shared across applications."""

from __future__ import annotations

import uuid

from django.db import transaction
from django.utils import timezone

from audit import ledger
from audit.ledger import Actor
from routing.models import Application, Run, RunRole

NEW_RUN = "new"


class RunNotFound(Exception):
    """The run id names another application's run."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r} for this application")
        self.run_id = run_id


class RunClosed(Exception):
    """The run was closed: no call joins it any more."""

    def __init__(self, run: Run) -> None:
        super().__init__(f"run {run.pk} was closed at {run.closed_at:%Y-%m-%dT%H:%M:%SZ}; open a new one")
        self.run = run


class InvalidRun(ValueError):
    """A run id or role the caller must change; the message says how."""


def run_id_parse(run_id: str) -> uuid.UUID | None:
    """The run id a caller sent: None for `new`; InvalidRun for anything but `new` or a UUID."""
    if run_id.strip().lower() == NEW_RUN:
        return None
    try:
        return uuid.UUID(run_id.strip())
    except ValueError:
        raise InvalidRun(f"run id {run_id!r} is neither {NEW_RUN!r} nor a UUID") from None


def run_role_parse(role: str) -> str:
    if role and role not in RunRole.values:
        raise InvalidRun(f"unknown run role {role!r}; allowed: {', '.join(RunRole.values)}")
    return role


def run_join(*, application: Application, run_id: str, actor: Actor) -> tuple[Run, bool]:
    """The run a call joins, and whether this call opened it (`run.opened` written in the caller's
    transaction, which also writes the call's job). Raises InvalidRun or RunNotFound."""
    wanted = run_id_parse(run_id)
    with transaction.atomic():
        if wanted is None:
            run, opened = Run.objects.create(application=application), True
        else:
            # Two calls opening the same fresh id race on the primary key; get_or_create lets one in and
            # hands the other the row it wrote.
            run, opened = Run.objects.get_or_create(pk=wanted, defaults={"application": application})
        if run.application_id != application.pk:
            raise RunNotFound(run_id)
        if run.closed_at is not None:
            raise RunClosed(run)
        if opened:
            ledger.append(
                "run.opened",
                actor=actor,
                subject={"application": application.pk},
                body={"run_id": str(run.pk), "named_by_caller": wanted is not None},
            )
    return run, opened


def run_close(*, run: Run, actor: Actor) -> bool:
    """Close the run: later calls naming it are refused (its calls in flight finish). False when it was
    already closed; the conditional UPDATE lets exactly one of two concurrent closes write `run.closed`."""
    with transaction.atomic():
        now = timezone.now()
        if not Run.objects.filter(pk=run.pk, closed_at__isnull=True).update(closed_at=now):
            return False
        run.refresh_from_db()
        ledger.append(
            "run.closed",
            actor=actor,
            subject={"application": run.application_id},
            body={"run_id": str(run.pk), "calls": run.calls, "flagship_calls": run.flagship_calls},
        )
    return True
