"""replay_eval: the policy's figures and the baselines, checked against direct computations from the file."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from evaluation.recorded.outcomes import demo_prices as evaluation_prices
from evaluation.recorded.outcomes import outcomes_from_items, parse_tier_map
from evaluation.recorded.responders import ServerResponder, recorded_server
from evaluation.recorded.simulate import eval_catalog, run_policy
from routing.decide.policy.document import load_policy
from routing.models import Evaluation, EvaluationKind
from tests.support.evaluations import (
    GSM8K,
    GSM8K_TIERS,
    HAND_POLICY,
    SIM_TIERS,
    direct_answers,
    read_jsonl,
    run_json,
    synthetic,
    write_jsonl,
)

REPORT_KEYS = {
    "items", "accuracy", "cost_usd", "mean_cost_usd", "relative_cost", "flagship_only", "tier_only", "oracle",
    "random_mix", "escalation_rate", "final_tier_share", "mean_latency_ms", "approvals_triggered",
    "calibration", "profile", "curve", "evaluation",
}  # fmt: skip

def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9)


def check_baselines(report: dict, items: list[dict], tiers: dict[str, str]) -> None:
    answers = direct_answers(items, tiers)
    top = list(tiers)[-1]
    reference_cost = sum(answers[i["id"]][top][1] for i in items)
    for tier in tiers:
        right = sum(answers[i["id"]][tier][0] for i in items)
        cost = sum(answers[i["id"]][tier][1] for i in items)
        assert close(report["tier_only"][tier]["accuracy"], right / len(items))
        assert close(report["tier_only"][tier]["cost_usd"], cost)
        assert close(report["tier_only"][tier]["relative_cost"], cost / reference_cost)
    assert report["flagship_only"] == {"tier": top, **report["tier_only"][top]}
    oracle_right, oracle_cost = 0, 0.0
    for item in items:
        row = answers[item["id"]]
        right = [tier for tier in tiers if row[tier][0]]
        oracle_right += bool(right)
        oracle_cost += min(row[tier][1] for tier in right) if right else row[top][1]
    assert close(report["oracle"]["accuracy"], oracle_right / len(items))
    assert close(report["oracle"]["cost_usd"], oracle_cost)
    shares = report["final_tier_share"]
    assert close(sum(shares.values()), 1.0)
    mix_accuracy = sum(share * report["tier_only"][tier]["accuracy"] for tier, share in shares.items())
    mix_cost = sum(share * report["tier_only"][tier]["cost_usd"] for tier, share in shares.items())
    assert close(report["random_mix"]["accuracy"], mix_accuracy)
    assert close(report["random_mix"]["cost_usd"], mix_cost)
    assert close(report["relative_cost"], report["cost_usd"] / reference_cost)


@pytest.mark.django_db
def test_on_gsm8k_it_reports_every_figure_and_the_baselines_of_the_file() -> None:
    report = run_json("replay_eval", "--outcomes", str(GSM8K), "--tiers", GSM8K_TIERS, "--policy", "two-tier")
    items = read_jsonl(GSM8K)
    tiers = {"mini": "mistralai/Mixtral-8x7B-Instruct-v0.1", "flagship": "gpt-4-1106-preview"}
    assert set(report) >= REPORT_KEYS
    assert report["items"] == 1319
    check_baselines(report, items, tiers)
    # No confidence is recorded: logprob is not applicable, every step scores 0 and escalates, so the
    # cascade answers as GPT-4 does and pays for both models.
    answers = direct_answers(items, tiers)
    assert report["escalation_rate"] == {"mini": 1.0, "flagship": 0.0}
    assert report["final_tier_share"] == {"flagship": 1.0}
    assert report["accuracy"] == report["flagship_only"]["accuracy"] == pytest.approx(0.857, abs=5e-4)
    assert close(report["cost_usd"], sum(a["mini"][1] + a["flagship"][1] for a in answers.values()))
    assert report["oracle"]["accuracy"] == pytest.approx(1 - 94 / 1319, abs=1e-6)  # neither right on 94
    assert report["approvals_triggered"]["by_rule"] == {"unsure-after-flagship": 1319}
    assert report["mean_latency_ms"] is None  # nothing recorded, nothing invented
    assert report["tokens_estimated"] is True
    assert report["calibration"]["mini"]["ece"] is None
    assert report["profile"]["reasoning"]["cheapest_sufficient"]["none"] == pytest.approx(94 / 1319, abs=1e-6)
    stored = Evaluation.objects.get(pk=report["evaluation"])
    assert stored.kind == EvaluationKind.EVAL
    assert stored.report == {key: value for key, value in report.items() if key != "evaluation"}


@pytest.mark.django_db
def test_on_a_synthetic_three_tier_file_the_cascade_is_what_walking_it_by_hand_gives(tmp_path: Path) -> None:
    items = synthetic(400, seed=5)
    outcomes = write_jsonl(tmp_path / "sim.jsonl", items)
    policy = tmp_path / "policy.yaml"
    policy.write_text(HAND_POLICY)
    report = run_json("replay_eval", "--outcomes", str(outcomes), "--tiers", SIM_TIERS, "--policy", str(policy))
    assert set(report) >= REPORT_KEYS
    tiers = {"nano": "sim-nano", "mini": "sim-mini", "flagship": "sim-flagship"}
    check_baselines(report, items, tiers)

    right = cost = latency = held = 0.0
    calls, escalations, finals = {t: 0 for t in tiers}, {t: 0 for t in tiers}, {t: 0 for t in tiers}
    for item in items:
        small = item["task_type"] in ("classification", "extraction", "ranking")
        cascade = [("nano", 0.8), ("mini", 0.7), ("flagship", None)] if small else [("mini", 0.75), ("flagship", None)]
        for tier, threshold in cascade:
            response = item["responses"][tiers[tier]]
            calls[tier] += 1
            cost += response["cost_usd"]
            latency += response["latency_ms"]
            if threshold is None or response["confidence"] >= threshold:
                finals[tier] += 1
                right += response["correct"]
                held += response["confidence"] < 0.5
                break
            escalations[tier] += 1
    assert close(report["accuracy"], right / len(items))
    assert close(report["cost_usd"], cost)
    assert close(report["mean_latency_ms"], latency / len(items))
    assert report["escalation_rate"] == {t: round(escalations[t] / calls[t], 6) for t in tiers if calls[t]}
    assert report["final_tier_share"] == {t: round(finals[t] / len(items), 6) for t in tiers if finals[t]}
    assert report["approvals_triggered"]["by_rule"] == {"unsure": held}
    # The reliability diagram and the profile are the file's, per tier and per task type.
    pairs = [(i["responses"]["sim-nano"]["confidence"], i["responses"]["sim-nano"]["correct"]) for i in items]
    assert report["calibration"]["nano"]["answers"] == len(items)
    assert sum(row["count"] for row in report["calibration"]["nano"]["bins"]) == len(pairs)
    ece = sum(
        len(group) * abs(sum(c for _, c in group) / len(group) - sum(p for p, _ in group) / len(group))
        for b in range(10)
        if (group := [(p, c) for p, c in pairs if min(int(p * 10), 9) == b])
    ) / len(pairs)
    assert report["calibration"]["nano"]["ece"] == pytest.approx(ece, abs=1e-6)
    coding = [i for i in items if i["task_type"] == "coding"]
    assert report["profile"]["coding"]["items"] == len(coding)
    assert report["profile"]["coding"]["tiers"]["mini"]["suffices"] == pytest.approx(
        sum(i["responses"]["sim-mini"]["correct"] for i in coding) / len(coding), abs=1e-6
    )


@pytest.mark.django_db
def test_over_http_and_in_memory_the_reports_are_the_same(tmp_path: Path) -> None:
    outcomes = write_jsonl(tmp_path / "sim.jsonl", synthetic(120, seed=8))
    args = ("--outcomes", str(outcomes), "--tiers", SIM_TIERS, "--policy", "two-tier")
    over_http, in_memory = run_json("replay_eval", *args), run_json("replay_eval", *args, "--in-memory")
    over_http.pop("evaluation"), in_memory.pop("evaluation")
    assert over_http == in_memory


CONFIDENCES = [0.0, 1e-9, 0.05, 0.1, 0.123456789, 1 / 3, 0.35, 0.5, 0.75, 0.999999, 1.0]


def test_a_recorded_confidence_comes_back_through_the_server_and_the_logprob_estimator_unchanged() -> None:
    values = CONFIDENCES + [i["responses"]["sim-mini"]["confidence"] for i in synthetic(80, seed=2)]
    items = [
        {
            "id": f"c{index}",
            "messages": [{"role": "user", "content": f"question {index}"}],
            "responses": {"m": {"content": "The answer is 7.\nanswer: 7", "correct": True, "confidence": value}},
        }
        for index, value in enumerate(values)
    ]
    outcomes = outcomes_from_items(items)
    tiers = parse_tier_map("mini=m", outcomes.models)
    document = load_policy("rules:\n  - id: only-mini\n    cascade: [mini]\n    confidence: logprob\n")
    prices = evaluation_prices()
    with recorded_server(outcomes) as server:
        responder = ServerResponder(server.base_url, outcomes, tiers, prices)
        runs = run_policy(outcomes.items, document, eval_catalog(tiers, prices), responder)
    assert len(runs) == len(values)
    for run, value in zip(runs, values, strict=True):
        assert run.final.confidence_method == "logprob" and run.final.confidence_applicable
        assert round(run.final.confidence, 6) == round(value, 6), run.item_id


@pytest.mark.django_db
def test_a_score_equal_to_the_threshold_is_accepted_and_one_just_below_escalates(tmp_path: Path) -> None:
    def item(name: str, confidence: float) -> dict:
        return {
            "id": name,
            "task_type": "general",
            "messages": [{"role": "user", "content": f"question {name}"}],
            "responses": {
                "small": {"content": "answer: 1", "correct": True, "confidence": confidence},
                "large": {"content": "answer: 1", "correct": True, "confidence": 0.9},
            },
        }

    outcomes = write_jsonl(tmp_path / "edge.jsonl", [item("equal", 0.75), item("below", 0.7499999)])
    report = run_json(
        "replay_eval",
        "--outcomes",
        str(outcomes),
        "--tiers",
        "mini=small,flagship=large",
        "--policy",
        "two-tier",
    )
    # two-tier escalates mini below 0.75: the item at exactly 0.75 stays on mini, the other goes up.
    assert report["final_tier_share"] == {"mini": 0.5, "flagship": 0.5}
    assert report["escalation_rate"]["mini"] == 0.5


@pytest.mark.django_db
def test_a_policy_named_in_the_database_is_evaluated_and_linked(tmp_path: Path, catalog) -> None:
    from audit.ledger import Actor
    from routing.services.policies import policy_create, policy_version_create

    policy = policy_create(name="eval-target", actor=Actor.system("test"))
    version = policy_version_create(
        policy=policy, source=Path("evaluation/policies/two-tier.yaml").read_text(), author=None
    )
    outcomes = write_jsonl(tmp_path / "sim.jsonl", synthetic(30, seed=3))
    report = run_json(
        "replay_eval",
        "--outcomes",
        str(outcomes),
        "--tiers",
        SIM_TIERS,
        "--policy",
        "eval-target",
        "--in-memory",
    )
    assert report["policy"]["source"] == "eval-target v1"
    assert Evaluation.objects.get(pk=report["evaluation"]).policy_version == version


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("no-such-policy", "neither a file nor a policy name"),
        ("verifier", "needs a second model call"),
        ("invalid", "invalid policy"),
    ],
)
def test_a_policy_it_cannot_use_is_refused_with_a_reason(tmp_path: Path, policy: str, message: str) -> None:
    outcomes = write_jsonl(tmp_path / "sim.jsonl", synthetic(5, seed=1))
    files = {
        "verifier": "verifier: {tier: flagship}\nrules:\n  - id: r\n    cascade: [mini, flagship]\n"
        "    confidence: verifier\n",
        "invalid": "rules: []\n",
    }
    if policy in files:
        (tmp_path / "p.yaml").write_text(files[policy])
        policy = str(tmp_path / "p.yaml")
    with pytest.raises(CommandError, match=message):
        call_command(
            "replay_eval",
            "--outcomes",
            str(outcomes),
            "--tiers",
            SIM_TIERS,
            "--policy",
            policy,
            "--in-memory",
        )


@pytest.mark.django_db
def test_a_missing_outcomes_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read recorded outcomes"):
        call_command(
            "replay_eval",
            "--outcomes",
            str(tmp_path / "none.jsonl"),
            "--tiers",
            SIM_TIERS,
            "--policy",
            "two-tier",
        )


@pytest.mark.django_db
def test_without_json_it_prints_a_table(tmp_path: Path) -> None:
    outcomes = write_jsonl(tmp_path / "sim.jsonl", synthetic(20, seed=4))
    out = io.StringIO()
    call_command(
        "replay_eval",
        "--outcomes",
        str(outcomes),
        "--tiers",
        SIM_TIERS,
        "--policy",
        "two-tier",
        "--in-memory",
        stdout=out,
    )
    text = out.getvalue()
    assert "flagship only" in text and "oracle" in text and "escalation rate" in text


@pytest.mark.django_db
def test_the_curve_sweeps_the_thresholds_and_passes_through_the_policys_own_figures(tmp_path: Path) -> None:
    items = synthetic(300, seed=11)
    outcomes = write_jsonl(tmp_path / "sim.jsonl", items)
    policy = tmp_path / "policy.yaml"
    policy.write_text(HAND_POLICY.replace("{nano: 0.8, mini: 0.7}", "{nano: 0.8, mini: 0.75}"))
    args = ("--outcomes", str(outcomes), "--tiers", SIM_TIERS, "--in-memory")
    report = run_json("replay_eval", *args, "--policy", str(policy))
    curve = report["curve"]
    assert len(curve) == 21 * 21  # nano and mini both escalate: every pair on the 0.05 grid
    assert [point["relative_cost"] for point in curve] == sorted(point["relative_cost"] for point in curve)
    # The same thresholds everywhere the policy uses them (mini is 0.75 in both rules): the policy's point.
    own = next(point for point in curve if point["thresholds"] == {"nano": 0.8, "mini": 0.75})
    assert own["accuracy"] == pytest.approx(report["accuracy"], abs=1e-6)
    assert own["relative_cost"] == pytest.approx(report["relative_cost"], abs=1e-6)
    # Threshold 0 accepts every nano answer (the small tasks) and mini's elsewhere; 1 escalates all but 1.0.
    tiers = {"nano": "sim-nano", "mini": "sim-mini", "flagship": "sim-flagship"}
    answers = direct_answers(items, tiers)
    small = {i["id"] for i in items if i["task_type"] in ("classification", "extraction", "ranking")}
    first = "nano"
    zero = next(point for point in curve if point["thresholds"] == {"nano": 0.0, "mini": 0.0})
    right = sum(answers[i][first if i in small else "mini"][0] for i in answers)
    assert zero["accuracy"] == pytest.approx(right / len(items), abs=1e-6)
    frontier = [point for point in curve if point["frontier"]]
    assert frontier[0] == curve[0]
    assert [p["accuracy"] for p in frontier] == sorted(p["accuracy"] for p in frontier)
    assert len(set(p["accuracy"] for p in frontier)) == len(frontier)


@pytest.mark.django_db
def test_a_two_tier_policy_has_a_21_point_curve(tmp_path: Path) -> None:
    outcomes = write_jsonl(tmp_path / "sim.jsonl", synthetic(120, seed=3))
    args = ("--outcomes", str(outcomes), "--tiers", SIM_TIERS, "--in-memory", "--policy", "two-tier")
    curve = run_json("replay_eval", *args)["curve"]
    assert sorted(point["thresholds"]["mini"] for point in curve) == [round(i * 0.05, 6) for i in range(21)]
    assert all(set(point) == {"thresholds", "relative_cost", "accuracy", "frontier"} for point in curve)
