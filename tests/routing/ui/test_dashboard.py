"""The dashboard's plots, drawn from bounded windows of real rows."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from routing.models import Step
from routing.ui import metrics
from tests.support.builders import active_policy, held_job
from tests.support.factories import ApplicationFactory


def test_it_draws_every_plot_with_text_labels(as_user, people):
    version = active_policy()
    application = ApplicationFactory(name="Budgeted", monthly_soft_limit_usd=Decimal("0.0001"),
                                     monthly_hard_limit_usd=Decimal("1"))
    held_job(version=version, application=application, age=timedelta(hours=2))
    page = as_user("admin").get(reverse("dashboard")).content.decode()
    for title in (
        "Spend per tier per day, last 14 days (USD)",
        "Share of jobs escalated at least once, per task type",
        "nano: confidence scores",
        "Approvals waiting, by age",
        "Spend this month against budget",
        "Jobs submitted per minute, last hour",
    ):
        assert f">{title}</title>" in page, title
    assert 'class="threshold"' in page and "threshold 0.80" in page
    assert "Budgeted" in page and "— over" in page  # past its soft limit, said in words
    assert page.count('<pattern id="') >= 6  # series told apart by pattern, not colour alone
    assert "Open the review queue" not in page  # a policy admin does not work the queue


def test_the_figures_come_from_the_window(people):
    version = active_policy()
    job = held_job(version=version)
    now = timezone.now()
    days, before = metrics.spend_per_tier_per_day(now=now)
    assert len(days) == 14 and days[-1] == now.date()
    Step.objects.filter(job=job, index=0).update(created_at=now - timedelta(days=30))  # out of the window
    _, after = metrics.spend_per_tier_per_day(now=now)
    assert before["nano"][-1] - after["nano"][-1] == pytest.approx(0.00001)
    assert before["flagship"][-1] == after["flagship"][-1] >= 0.00011
    waiting = metrics.approvals_waiting(now=now)
    assert waiting.total >= 1
    distributions = {d.tier: d for d in metrics.confidence_distributions(now=now)}
    assert sum(distributions["flagship"].counts) >= 1
    minutes, counts = metrics.jobs_per_minute(now=now)
    assert len(minutes) == 60 and len(counts) == 60
