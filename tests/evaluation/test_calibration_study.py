"""The certificate keeps its promise over hundreds of random splits of item sets whose truth is known, and
is tight; and the check would catch a procedure that does not keep it."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from evaluation.calibration import exact
from evaluation.calibration.calibrate import threshold_grid
from evaluation.calibration.cases import calibrated_tiers
from evaluation.calibration.study import INDEPENDENT_SEED, POPULATIONS, population_cases, split_study
from evaluation.calibration.table import OutcomeTable, outcome_table

DELTA, SPLITS = 0.05, 200


def _table(name: str, size: int, seed: int = 3) -> tuple[OutcomeTable, bool]:
    cases = population_cases(POPULATIONS[name], size=size, seed=seed)
    tiers = calibrated_tiers(cases)
    return outcome_table(cases, threshold_grid(tiers)), len(tiers) <= 1


@pytest.fixture(scope="module")
def synthetic() -> tuple[OutcomeTable, bool]:
    return _table("synthetic-calibrated", 3000)


def test_on_synthetic_outcomes_the_certificate_misses_no_more_often_than_promised_and_is_tight(synthetic) -> None:
    table, fixed = synthetic
    elsewhere, _ = _table("synthetic-calibrated", 3000, seed=3 + INDEPENDENT_SEED)
    result = split_study(
        table, fixed_path=fixed, calibration_items=1200, target=0.95, delta=DELTA, splits=SPLITS, independent=elsewhere
    )
    assert result["miss_rate"] <= DELTA, result
    assert result["population_miss_rate"] <= DELTA and result["independent_miss_rate"] <= DELTA, result
    assert result["certified"] >= 0.95 * SPLITS, result  # not valid by refusing to claim anything
    # 1,200 calibration items here: about 1.24 / 1.3 (the betting test: about 1.3 / 1.4). The goals
    # (1.2 / 1.4) are met at the study's 2,000 (`calibration_study`).
    assert result["tightness_median"] <= 1.25 and result["tightness_p90"] <= 1.4, result
    assert result["relative_cost_median"] < 0.7, result  # it saves money against the flagship alone


def test_miscalibrated_confidence_keeps_the_guarantee() -> None:
    table, fixed = _table("synthetic-miscalibrated", 3000)
    # Overconfident scores crowd near 1: the grid steps 0.005 there, fixed before any item is seen.
    assert {0.995, 0.965, 0.905} <= {setting["mini"] for setting in table.settings}
    for target in (0.95, 0.97):
        result = split_study(table, fixed_path=fixed, calibration_items=1200, target=target, delta=DELTA, splits=SPLITS)
        assert result["miss_rate"] <= DELTA and result["population_miss_rate"] <= DELTA, result
        assert result["certified"] >= 0.9 * SPLITS, result
        # At 0.97 with 0.01 steps only: 1.19 / 1.41 (the certified mini threshold a step above hindsight's).
        assert result["tightness_median"] <= 1.2 and result["tightness_p90"] <= 1.4, result


def test_on_real_gsm8k_verdicts_the_certificate_misses_no_more_often_than_promised() -> None:
    table, fixed = _table("gsm8k-scored", 1319)
    assert fixed  # two tiers: the grid from 1.00 down is the path, every calibration item tests
    result = split_study(table, fixed_path=fixed, calibration_items=528, target=0.95, delta=DELTA, splits=SPLITS)
    # The promise is about the distribution the calibration items come from: here the 1,319 items, whose
    # truth is known exactly. The fresh items (the other 791) miss more often than that (11 of 200 here):
    # a calibration sample that certified looked good, so its complement in one finite set looks worse,
    # by n_cal / n_fresh x the calibration's luck (evaluation.calibration.study).
    assert result["population_miss_rate"] <= DELTA, result
    assert result["miss_rate"] <= 2 * DELTA, result
    assert result["certified"] == SPLITS, result
    # The confidence drawn with seed 3 is less telling than the study's (seed 0: 1.14 / 1.28): about 1.23.
    assert result["tightness_median"] <= 1.25 and result["tightness_p90"] <= 1.4, result


def test_on_a_small_three_tier_vote_share_set_the_certificate_keeps_its_promise_and_saves() -> None:
    """Issue 17's shape: 369 items calibrate, two cheap tiers whose confidence is a 5-sample vote share.
    Pareto Testing orders its path on a quarter of them and tests on the rest; the staircase tests on all."""
    cases = population_cases(POPULATIONS["vote-share-369"], size=4000, seed=0)
    tiers = calibrated_tiers(cases)
    table = outcome_table(cases, threshold_grid(tiers))
    confidences = {round(float(answer.confidence), 4) for case in cases for answer in case.answers[:-1]}
    assert len(tiers) == 2 and confidences <= {0.2, 0.4, 0.6, 0.8, 1.0}
    result = split_study(table, fixed_path=False, calibration_items=369, target=0.95, delta=DELTA, splits=SPLITS)
    assert result["miss_rate"] <= DELTA and result["population_miss_rate"] <= DELTA, result
    # With the staircase beside Pareto Testing every split certifies (Pareto alone ordered by the
    # predicted bound: 188 of 200; ordered by the mean loss: 165).
    assert result["certified"] >= 0.97 * SPLITS, result
    # Issue 17's check (a 95% target certifying <= 35% of the flagship's cost at >= 97% of its accuracy):
    # the median split meets it, and more than half the splits do (with the betting test: 40.5%, 38.5%;
    # with delta / 2 for the staircase at this size, not 0.8 of it: 56%; now 59.5%, on the fresh items
    # and on the calibration items alike).
    assert result["relative_cost_median"] < 0.35 and result["accuracy_ratio_median"] >= 0.97, result
    assert result["share_cost_35_accuracy_97"] >= 0.58, result
    assert result["share_cost_35_accuracy_97_calibration"] >= 0.58, result


def test_the_check_catches_a_procedure_that_does_not_test(synthetic) -> None:
    """Choosing the cheapest setting that meets the target on the calibration items, untested, misses on
    fresh items and on the whole set far more often than delta: the miss-rate checks can fail."""
    table, _ = synthetic
    draws = np.random.default_rng(0)
    truth = table.losses(0.95).mean(axis=1) <= 0
    misses = whole_set_misses = 0
    for _ in range(SPLITS):
        order = draws.permutation(table.items)
        calibration, fresh = order[:1200], order[1200:]
        meets = table.losses(0.95, calibration).mean(axis=1) <= 0
        cost = table.cost[:, calibration].sum(axis=1)
        naive = int(np.flatnonzero(meets)[np.argmin(cost[meets])])
        misses += table.losses(0.95, fresh)[naive].mean() > 0
        whole_set_misses += not truth[naive]
    assert misses / SPLITS > 4 * DELTA and whole_set_misses / SPLITS > 4 * DELTA


def _draws(cells: list[float], items: int, runs: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    draws = np.random.default_rng(seed)
    codes = draws.choice(np.array([exact.A, exact.B, exact.C, exact.D], dtype=np.int8), size=(runs, items), p=cells)
    return exact.cell_counts(codes)


@pytest.mark.parametrize("gamma", [0.0, 0.03, 0.3])
def test_the_exact_test_rejects_a_true_null_no_more_often_than_delta(gamma: float) -> None:
    """Items drawn on the null's boundary (mean loss exactly 0), near where the loss is most skewed (few
    cascade-only-right items) and far from it, with both-wrong items mixed in: rejections at most delta,
    up to the simulation's own noise (3 standard errors)."""
    t, runs = 0.95, 4000
    both, reference_only, cascade_only = t - (1 + t) * gamma, 1 - t + t * gamma, gamma
    cells = [0.9 * both, 0.9 * reference_only, 0.9 * cascade_only, 0.1]
    rate = exact.rejects(*_draws(cells, 400, runs, seed=int(gamma * 100)), t, DELTA).mean()
    assert rate <= DELTA + 3 * (DELTA * (1 - DELTA) / runs) ** 0.5


def test_the_exact_test_is_powerful_where_betting_was_not() -> None:
    """Mean loss -0.035 with a standard deviation about 0.29 over 400 items: the z-score is -2.4, past the
    exact test's critical value (about -2.1 there), so most samples certify — while (mean / sd)^2 x n is
    5.7, short of the 2 log(1/delta) = 6 the anytime-valid betting test needs to certify half of them."""
    t = 0.95
    a, b, c = 0.86, 0.05, 0.0395
    cells = [a, b, c, 1 - a - b - c]
    mean = (t - 1) * a + t * b - c
    assert -0.036 < mean < -0.034
    assert exact.rejects(*_draws(cells, 400, 1000, seed=7), t, DELTA).mean() > 0.55


def test_items_to_reject_grows_as_the_margin_shrinks() -> None:
    near = exact.items_to_reject((0.86, 0.05, 0.045, 0.045), 0.95, DELTA)
    wide = exact.items_to_reject((0.86, 0.05, 0.06, 0.03), 0.95, DELTA)
    assert near is not None and wide is not None and near > wide
    assert exact.items_to_reject((0.86, 0.1, 0.02, 0.02), 0.95, DELTA) is None  # mean above 0


@pytest.mark.django_db
def test_the_command_prints_the_table_and_refuses_bad_options() -> None:
    out = io.StringIO()
    call_command(
        "calibration_study", "--population", "gsm8k", "--targets", "0.95", "--splits", "20", "--json", stdout=out
    )
    (row,) = json.loads(out.getvalue())
    assert row["population"] == "gsm8k" and row["splits"] == 20 and row["valid"] is True
    # No confidence on GSM8K: the only certified setting escalates everything, as the hindsight one does.
    assert row["tightness_median"] == 1.0
    with pytest.raises(CommandError, match="--targets"):
        call_command("calibration_study", "--targets", "1.5")


def test_per_rule_every_rules_claim_holds_at_once_as_often_as_promised() -> None:
    from evaluation.calibration.study import per_rule_cases, per_rule_split_study

    result = per_rule_split_study(
        per_rule_cases(size=3000, seed=5), target=0.95, delta=DELTA, splits=SPLITS, calibration_share=0.4
    )
    assert len(result["rules"]) == 2 and result["delta_per_rule"] == DELTA / 2
    assert result["miss_rate"] <= DELTA and result["population_miss_rate"] <= DELTA, result
    assert result["certified"] >= 0.95 * SPLITS and result["tightness_median"] <= 1.6, result


def test_from_history_the_certified_threshold_keeps_the_risk_as_often_as_promised() -> None:
    from evaluation.calibration.study import live_study

    result = live_study(target=0.95, delta=DELTA, splits=SPLITS, labels=600)
    assert result["miss_rate"] <= DELTA, result
    assert result["certified"] == SPLITS and result["tightness_median"] < 1.6, result
