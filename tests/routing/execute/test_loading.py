"""The job a worker runs, read from SQL compiled once per process (routing.execute.loading): the same
instances the queryset builds, in one query, for every job and not only the first."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from routing.execute.loading import job_for_run
from routing.models import Application, Job
from tests.support.governed import governed


@pytest.mark.django_db
def test_it_reads_each_job_as_the_select_related_queryset_does(model_server, django_assert_num_queries):
    setup = governed(model_server.base_url)
    Application.objects.filter(pk=setup.application.pk).update(
        monthly_soft_limit_usd=Decimal("12.50"), review_notify_url="https://reviews.example/hook"
    )
    jobs = [
        setup.submit("[task:classification] one", labels={"region": "eu"}, metadata={"n": 1}),
        setup.submit("[task:classification] two"),
    ]
    for submitted in jobs:
        expected = Job.objects.select_related("policy_version", "application").get(pk=submitted.pk)
        with django_assert_num_queries(1):
            loaded = job_for_run(str(submitted.pk))
            assert loaded is not None
            policy_version, application = loaded.policy_version, loaded.application
        for field in Job._meta.concrete_fields:
            assert getattr(loaded, field.attname) == getattr(expected, field.attname), field.attname
        assert (policy_version.sha256, policy_version.document) == (
            expected.policy_version.sha256,
            expected.policy_version.document,
        )
        assert application.monthly_soft_limit_usd == Decimal("12.50")
        assert application.review_notify_url == "https://reviews.example/hook"


@pytest.mark.django_db
def test_it_returns_none_for_a_job_that_does_not_exist():
    assert job_for_run(str(uuid.uuid4())) is None
