"""A job's walked cascade across attempts: a later attempt resumes from the steps an earlier one recorded
(routing.execute.run), so replays and live labels must read both attempts' rows, not the last one's."""

from decimal import Decimal

import pytest

from evaluation.replay.routing_only import original_of
from routing.models import StepOutcome
from routing.selectors import steps_walked
from tests.support.builders import active_policy
from tests.support.factories import JobFactory, StepFactory

pytestmark = pytest.mark.django_db


def _step(job, attempt, index, tier, outcome, cost="0.001"):
    return StepFactory(job=job, attempt=attempt, index=index, tier=tier, outcome=outcome, cost_usd=Decimal(cost))


def test_it_takes_the_escalated_steps_an_earlier_attempt_recorded_before_the_resumed_ones():
    job = JobFactory(policy_version=active_policy())
    nano = _step(job, 1, 0, "nano", StepOutcome.ESCALATED, "0.001")
    _step(job, 1, 1, "mini", StepOutcome.FAILED)  # the first worker's mini call failed, then it died
    mini = _step(job, 2, 1, "mini", StepOutcome.ACCEPTED, "0.004")
    assert steps_walked(job.steps.all()) == [nano, mini]
    original = original_of(job)
    assert [step.pk for step in original.original_steps] == [nano.pk, mini.pk]
    assert original.original_cost == pytest.approx(0.005)


def test_a_step_asked_again_replaces_the_earlier_attempts_row_at_its_index():
    job = JobFactory(policy_version=active_policy())
    _step(job, 1, 0, "nano", StepOutcome.ESCALATED)
    _step(job, 1, 1, "mini", StepOutcome.ESCALATED)
    again = _step(job, 2, 0, "nano", StepOutcome.ACCEPTED)  # asked again, and this time kept
    assert steps_walked(job.steps.all()) == [again]


def test_a_first_attempt_is_its_own_answered_steps_in_order():
    job = JobFactory(policy_version=active_policy())
    second = _step(job, 1, 1, "mini", StepOutcome.ACCEPTED)
    first = _step(job, 1, 0, "nano", StepOutcome.ESCALATED)
    assert steps_walked(job.steps.all()) == [first, second]
    assert steps_walked([]) == []
