"""Reading the job a worker is about to run: once per job, so its cost is paid on every job of the pipeline.

Compiling `Job.objects.select_related("policy_version", "application").filter(pk=…)` — three models, some
sixty columns — cost about 1.0 ms of CPU per job, and the whole read about 2.0 ms, against 0.2 ms for
running the SQL itself (issue #15, measured in alternating blocks). Only the id changes from one job to the
next, so the SQL and the way its row becomes models are built once per process, by Django's own compiler,
and each job runs that SQL and builds the same instances the queryset would (its converters, its
select_related populators).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.models.query import get_related_populators

from routing.models import Job

_STAND_IN = uuid.UUID(int=0)


@dataclass(frozen=True)
class _Read:
    sql: str
    compiler: Any
    converters: dict
    fields: tuple[int, int]
    field_names: list[str]
    populators: list


@functools.cache
def _read(alias: str) -> _Read:
    queryset = Job.objects.using(alias).select_related("policy_version", "application").filter(pk=_STAND_IN)
    compiler = queryset.query.get_compiler(using=alias)
    sql, params = compiler.as_sql()
    if list(params) != [_STAND_IN]:
        raise AssertionError(f"the job's read takes parameters other than its id: {params!r}")
    select, klass_info = compiler.select, compiler.klass_info
    start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
    return _Read(
        sql=sql,
        compiler=compiler,
        converters=compiler.get_converters([column for column, _, _ in select]),
        fields=(start, end),
        field_names=[column.target.attname for column, _, _ in select[start:end]],
        # The signature of the installed Django (5.2); the stubs describe a later one's.
        populators=get_related_populators(klass_info, select, alias),  # type: ignore[call-arg]
    )


def job_for_run(job_id: str, *, alias: str = "default") -> Job | None:
    """The job with its policy version and application loaded, or None: what
    `Job.objects.select_related("policy_version", "application").filter(pk=job_id).first()` returns."""
    read = _read(alias)
    with connections[alias].cursor() as cursor:
        cursor.execute(read.sql, [uuid.UUID(str(job_id))])
        row = cursor.fetchone()
    if row is None:
        return None
    if read.converters:
        row = next(iter(read.compiler.apply_converters([row], read.converters)))
    start, end = read.fields
    job = Job.from_db(alias, read.field_names, row[start:end])
    for populator in read.populators:
        populator.populate(row, job)
    return job
