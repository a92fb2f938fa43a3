"""Provider faults against the real local model server: fallback, Retry-After, timeouts, the breaker."""

from __future__ import annotations

import time

import pytest

from routing.execute.breaker import CircuitBreaker
from routing.execute.calls import TierUnavailable, call_tier
from routing.models import JobStatus
from tests.support.factories import DeploymentFactory, unique
from tests.support.governed import governed
from tests.support.workers import finished

pytestmark = pytest.mark.slow
REQUEST = {"messages": [{"role": "user", "content": "[task:classification] [confidence:nano=0.9] ok?"}]}


@pytest.fixture
def fast_retries(settings):
    settings.ARBITER_RETRY_BASE_S = 0.01
    settings.ARBITER_TRIES_PER_DEPLOYMENT = 2
    settings.ARBITER_BREAKER_THRESHOLD = 3
    settings.ARBITER_BREAKER_COOLDOWN_S = 1.0
    settings.PROVIDER_TIMEOUT_S = 0.5


def nano(model_server, **fields):
    name = unique("nano")
    return DeploymentFactory(name=name, tier="nano", model=f"sim-nano-{name}", base_url=model_server.base_url, **fields)


def test_a_500_falls_back_to_the_tiers_other_deployment_through_a_worker(model_server, workers):
    setup = governed(model_server.base_url)
    fallback = nano(model_server, priority=200)
    model_server.set_faults(setup.deployments["nano"].model, error_rate=1.0)
    workers.start()
    job = finished(setup.submit("[task:classification] [confidence:nano=0.95] billing?"))
    assert job.status == JobStatus.COMPLETED
    step = job.steps.get()
    assert step.deployment == fallback
    called = next(event.body for event in _events(job) if event.event_type == "model.called")
    outcomes = [(call["deployment"], call["outcome"]) for call in called["calls"]]
    primary = setup.deployments["nano"].name
    assert outcomes[0] == (primary, "error")
    assert outcomes[-1] == (fallback.name, "ok")


def _events(job):
    from audit.selectors import events_for_job

    return list(events_for_job(job.pk))


@pytest.mark.django_db
def test_a_429_with_retry_after_waits_at_least_that_long(model_server, fast_retries, settings):
    deployment = nano(model_server)
    model_server.set_faults(deployment.model, rate_limit_rate=1.0, retry_after=1)
    started = time.monotonic()
    with pytest.raises(TierUnavailable) as raised:
        call_tier("nano", [deployment], REQUEST)
    elapsed = time.monotonic() - started
    attempts = raised.value.attempts
    assert [attempt.outcome for attempt in attempts] == ["rate_limited", "rate_limited"]
    assert elapsed >= 1.0
    model_server.reset_faults(deployment.model)
    assert call_tier("nano", [deployment], REQUEST).attempts[-1].outcome == "ok"


@pytest.mark.django_db
def test_a_hang_times_out_and_falls_back(model_server, fast_retries):
    hanging, healthy = nano(model_server), nano(model_server, priority=200)
    model_server.set_faults(hanging.model, hang=True)
    try:
        started = time.monotonic()
        result = call_tier("nano", [hanging, healthy], REQUEST)
        assert time.monotonic() - started < 5
    finally:
        model_server.set_faults(hanging.model, hang=False)
    # One timeout, not a retry of the hanging deployment: its fallback gets the rest of the step's budget.
    assert [a.outcome for a in result.attempts] == ["timeout", "ok"]
    assert result.deployment == healthy


@pytest.mark.django_db
def test_the_breaker_opens_after_n_failures_and_closes_after_its_cooldown(model_server, fast_retries):
    deployment = nano(model_server)
    model_server.set_faults(deployment.model, error_rate=1.0)
    for _ in range(2):  # 2 tries per call: the third failure opens it during the second call
        with pytest.raises(TierUnavailable):
            call_tier("nano", [deployment], REQUEST)
    breaker = CircuitBreaker(deployment.name)
    assert breaker.state().state == "open"
    calls_before = model_server.stats()["by_model"].get(deployment.model, {})
    with pytest.raises(TierUnavailable) as raised:
        call_tier("nano", [deployment], REQUEST)
    assert [a.outcome for a in raised.value.attempts] == ["breaker_open"]
    assert model_server.stats()["by_model"].get(deployment.model, {}) == calls_before  # no call was made

    model_server.reset_faults(deployment.model)
    time.sleep(1.1)
    assert breaker.state().state == "half_open"
    assert call_tier("nano", [deployment], REQUEST).attempts[-1].outcome == "ok"
    assert breaker.state().state == "closed"
