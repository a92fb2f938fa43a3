"""Evaluations in a real browser: an admin replays past jobs under a draft from its version page, watches
the progress bar and lands on the report; an auditor reads a policy evaluation's charts.

Run with `pytest -m e2e`; screenshots land in test-results/screenshots/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("playwright", reason="pytest-playwright is not installed")

from playwright.sync_api import expect

from controlplane.roles import Role
from evaluation.offline_runs import evaluation_inputs, evaluation_run
from modelserver.generate import generate_items
from routing.models import HistoryReplayRun
from tests.support.browser import CHROMIUM, no_csp_violations, shoot, sign_in
from tests.support.builders import replayable_history
from tests.support.evaluations import HAND_POLICY, SIM_TIERS, write_jsonl
from tests.support.factories import UserFactory

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]


def test_an_admin_replays_history_under_a_draft_and_lands_on_the_report(page, ui_server, workers, console_errors):
    draft, application, jobs = replayable_history()
    workers.start()
    sign_in(page, ui_server, UserFactory(roles=[Role.POLICY_ADMIN]))
    page.goto(f"{ui_server}/policies/{draft.policy.name}/v{draft.number}/")
    page.get_by_label("Application").select_option(application.slug)
    expect(page.get_by_role("radio", name=re.compile("^routing only"))).to_be_checked()
    expect(page.get_by_text("Full re-execution spends money:")).to_be_visible()
    shoot(page, "22-replay-form")
    page.get_by_role("button", name="Start the replay").click()

    expect(page.locator("h1")).to_contain_text(f"Past jobs replayed under {draft.policy.name} v{draft.number}")
    expect(page.locator("progress#replay-bar")).to_be_visible()
    # The bar polls every second; when the worker is done the page opens the report by itself.
    page.wait_for_url(re.compile(r"/evaluations/\d+/$"), timeout=60_000)
    run = HistoryReplayRun.objects.get(policy_version=draft)
    assert (run.status, run.done, run.total) == ("done", 4, 4)
    expect(page.locator("h1")).to_contain_text(f"Evaluation #{run.evaluation_id}")
    expect(page.get_by_role("img", name=re.compile("Escalation rate per tier"))).to_be_visible()
    changes = page.locator("table.changes-list tbody tr")
    expect(changes).to_have_count(1)
    expect(changes).to_contain_text(str(jobs["cheaper"].pk)[:8])
    shoot(page, "23-history-replay-report")
    page.get_by_role("link", name=f"replay #{run.pk}").click()
    expect(page.locator("#replay-progress")).to_contain_text("4 of 4 jobs")
    no_csp_violations(console_errors)


def test_an_auditor_reads_a_policy_evaluation_with_its_charts(page, ui_server, live_db, tmp_path: Path,
                                                               console_errors):
    outcomes = write_jsonl(tmp_path / "outcomes.jsonl", list(generate_items(items=300, seed=4,
                                                                            tiers=("nano", "mini", "flagship"))))
    policy = tmp_path / "policy.yaml"
    policy.write_text(HAND_POLICY)
    _, evaluation = evaluation_run(inputs=evaluation_inputs(outcomes=outcomes, tiers=SIM_TIERS, policy=str(policy)),
                                   in_memory=True)
    sign_in(page, ui_server, UserFactory(roles=[Role.AUDITOR]))
    page.get_by_role("link", name="Evaluations", exact=True).click()
    page.get_by_role("link", name=f"#{evaluation.pk}", exact=True).click()
    expect(page.locator("h1")).to_contain_text(f"Evaluation #{evaluation.pk}")
    expect(page.get_by_role("img", name="Accuracy against relative cost")).to_be_visible()
    for tier in ("nano", "mini", "flagship"):
        expect(page.get_by_role("img", name=f"{tier}: confidence against observed accuracy")).to_be_visible()
    expect(page.locator("table.comparison tbody tr")).to_have_count(6)
    shoot(page, "24-evaluation-report")
    no_csp_violations(console_errors)
