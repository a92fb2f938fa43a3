"""Breaker and timeouts that fit together, against the real local model server: a hang is a failure the
breaker counts, and every try, wait and fallback of a step ends within the step's time budget."""

from __future__ import annotations

import time

import pytest

from routing.execute.breaker import CircuitBreaker
from routing.execute.calls import TierUnavailable, call_tier
from tests.support.factories import DeploymentFactory, unique

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
REQUEST = {"messages": [{"role": "user", "content": "[task:classification] [confidence:nano=0.9] ok?"}]}


def nano(model_server, **fields):
    name = unique("nano")
    return DeploymentFactory(name=name, tier="nano", model=f"sim-nano-{name}", base_url=model_server.base_url, **fields)


@pytest.fixture
def hanging(model_server):
    made = []

    def hang(**fields):
        deployment = nano(model_server, **fields)
        model_server.set_faults(deployment.model, hang=True)
        made.append(deployment)
        return deployment

    yield hang
    for deployment in made:
        model_server.reset_faults(deployment.model)


def test_hangs_a_timeout_apart_open_the_breaker(model_server, hanging, settings):
    settings.PROVIDER_TIMEOUT_S = 0.3
    settings.ARBITER_TRIES_PER_DEPLOYMENT = 1
    settings.ARBITER_BREAKER_THRESHOLD = 3
    settings.ARBITER_BREAKER_WINDOW_S = 2  # longer than the timeout, as the settings insist
    deployment = hanging()
    for _ in range(3):
        with pytest.raises(TierUnavailable) as raised:
            call_tier("nano", [deployment], REQUEST)
        assert [attempt.outcome for attempt in raised.value.attempts] == ["timeout"]
    assert CircuitBreaker(deployment.name).state().state == "open"
    calls_before = model_server.stats()["by_model"].get(deployment.model, {})
    with pytest.raises(TierUnavailable) as raised:
        call_tier("nano", [deployment], REQUEST)
    assert [attempt.outcome for attempt in raised.value.attempts] == ["breaker_open"]
    assert raised.value.tier_down
    assert 0 < raised.value.retry_in_s() <= settings.ARBITER_BREAKER_COOLDOWN_S
    assert model_server.stats()["by_model"].get(deployment.model, {}) == calls_before  # nothing was sent


def test_a_steps_tries_and_fallbacks_end_within_its_budget(model_server, hanging, settings):
    settings.PROVIDER_TIMEOUT_S = 5.0
    settings.ARBITER_TRIES_PER_DEPLOYMENT = 3
    settings.ARBITER_RETRY_BASE_S = 0.01
    settings.ARBITER_STEP_BUDGET_S = 1.5
    first, second = hanging(), hanging(priority=200)
    started = time.monotonic()
    with pytest.raises(TierUnavailable) as raised:
        call_tier("nano", [first, second], REQUEST)
    elapsed = time.monotonic() - started
    # Unbounded, this is up to 3 tries x 2 deployments x 5 s; the budget cuts the first call short.
    assert 1.4 <= elapsed < 3.0, elapsed
    outcomes = [attempt.outcome for attempt in raised.value.attempts]
    assert outcomes[0] == "timeout" and outcomes[-1] == "out_of_time", outcomes
    assert "timed out after 1.5 s" in raised.value.attempts[0].error


def test_a_retry_after_longer_than_the_budget_left_moves_on_to_the_next_deployment(model_server, settings):
    settings.ARBITER_STEP_BUDGET_S = 2.0
    limited, healthy = nano(model_server), nano(model_server, priority=200)
    model_server.set_faults(limited.model, rate_limit_rate=1.0, retry_after=3)
    try:
        started = time.monotonic()
        result = call_tier("nano", [limited, healthy], REQUEST)
        assert time.monotonic() - started < 1.5
    finally:
        model_server.reset_faults(limited.model)
    assert [(attempt.deployment, attempt.outcome) for attempt in result.attempts] == [
        (limited.name, "rate_limited"),
        (healthy.name, "ok"),
    ]
