"""Reviewers in a real browser: a held job arrives in the queue and is approved, an override with its diff,
two reviewers at once, a replay beside its original; with screenshots of each page.

Run with `pytest -m e2e`; screenshots land in test-results/screenshots/.
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright", reason="pytest-playwright is not installed")

from playwright.sync_api import expect

from controlplane.roles import Role
from routing.models import Job, JobStatus
from tests.support.browser import CHROMIUM, UNSURE, no_csp_violations, shoot, sign_in
from tests.support.factories import UserFactory
from tests.support.governed import REFUND_TOOL
from tests.support.workers import finished

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]

REFUND = ('[task:general] [confidence:mini=0.9,flagship=0.9] '
          '[call:issue_refund {"amount": 150, "note": "<script>alert(1)</script>"}] refund order 4411')


def test_a_reviewer_sees_a_held_job_arrive_and_approves_it(page, ui_server, browser_setup, console_errors):
    reviewer = UserFactory(roles=[Role.REVIEWER])
    sign_in(page, ui_server, reviewer)
    shoot(page, "01-dashboard-reviewer")
    page.get_by_role("link", name="Review queue", exact=True).click()
    page.get_by_placeholder("application").fill(browser_setup.application.slug)
    expect(page.locator("#queue-count")).to_contain_text("0 held jobs")

    job = finished(browser_setup.submit(UNSURE))
    assert job.status == JobStatus.AWAITING_APPROVAL
    # The count polls every 10 s and says when the queue changed; no reload by hand.
    expect(page.locator("#queue-count")).to_contain_text("1 held job", timeout=15_000)
    page.get_by_role("link", name=re.compile("the queue changed")).click()
    row = page.locator("#queue-rows tr", has_text=str(job.pk)[:8])
    expect(row).to_contain_text("unsure-after-flagship")
    shoot(page, "02-review-queue")

    row.get_by_role("link", name=str(job.pk)[:8]).click()
    expect(page.locator("h1")).to_contain_text("held for approval")
    expect(page.get_by_text("Why this rule")).to_be_visible()
    shoot(page, "03-job-held")
    page.locator("form[action$='/approve']").get_by_label("Note (optional)").fill("checked the ticket")
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator(".messages")).to_contain_text("your approval is recorded; the job is completed")
    expect(page.locator("h1")).to_contain_text("completed")
    shoot(page, "04-job-approved")
    assert Job.objects.get(pk=job.pk).status == JobStatus.COMPLETED
    no_csp_violations(console_errors)


def test_another_reviewer_overrides_with_a_reason_and_sees_the_diff(page, ui_server, browser_setup, console_errors):
    job = finished(browser_setup.submit(REFUND, task_type="general", tools=REFUND_TOOL))
    assert job.status == JobStatus.AWAITING_APPROVAL
    sign_in(page, ui_server, UserFactory(roles=[Role.REVIEWER]))
    page.goto(f"{ui_server}/jobs/{job.pk}/")
    # The model's output contains a script tag: it is shown as text and never runs.
    expect(page.locator("pre.output").nth(1)).to_contain_text("<script>alert(1)</script>")
    page.get_by_text("Override the answer").click()
    page.get_by_label("arguments of issue_refund").fill('{"amount": 90, "note": "capped at the policy limit"}')
    page.locator("#override_reason").fill("refunds above 100 need a manager; capped at 90")
    page.get_by_role("button", name="Preview the change").click()
    diff = page.locator("#override-preview .diff")
    expect(diff.locator(".diff-del")).to_contain_text(['"amount": 150'])
    expect(diff.locator(".diff-add")).to_contain_text(['"amount": 90'])
    shoot(page, "05-override-diff")
    page.get_by_role("button", name="Confirm the override").click()
    expect(page.locator(".messages")).to_contain_text("the override is recorded")
    # An override is a decision like an approval: on a two-approver hold it is the first of two.
    expect(page.locator("#h-answer")).to_contain_text("overridden — proposed, awaiting approval")
    expect(page.locator(".approval-count")).to_contain_text("1 of 2 approvals")
    shoot(page, "06-job-overridden")
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL
    assert job.result["output"]["tool_calls"][0]["arguments"] == {"amount": 90, "note": "capped at the policy limit"}
    no_csp_violations(console_errors)


def test_two_reviewers_at_once_one_wins_and_the_other_is_told(browser, ui_server, browser_setup):
    job = finished(browser_setup.submit(UNSURE))
    first, second = browser.new_page(), browser.new_page()
    sign_in(first, ui_server, UserFactory(roles=[Role.REVIEWER]))
    sign_in(second, ui_server, UserFactory(roles=[Role.REVIEWER]))
    for page in (first, second):
        page.goto(f"{ui_server}/jobs/{job.pk}/")
    first.get_by_role("button", name="Approve", exact=True).click()
    expect(first.locator(".messages")).to_contain_text("the job is completed")
    second.locator("#reject_reason").fill("wrong queue")
    second.get_by_role("button", name="Reject", exact=True).click()
    expect(second.get_by_role("alert")).to_contain_text("another reviewer acted on this job while you were looking")
    expect(second.locator("h1")).to_contain_text("completed")
    shoot(second, "07-stale-decision")


def test_a_replay_is_shown_side_by_side_with_its_original(page, ui_server, browser_setup, console_errors):
    job = finished(browser_setup.submit(UNSURE))
    sign_in(page, ui_server, UserFactory(roles=[Role.REVIEWER]))
    page.goto(f"{ui_server}/jobs/{job.pk}/")
    page.get_by_label("Replay under").select_option(label=f"{browser_setup.policy.name} v1")
    page.get_by_role("button", name="Replay").click()
    expect(page.locator("h1")).to_contain_text("Replay beside its original")
    replay = page.locator("section[aria-label=replay]")
    # The page polls while the replay runs; it is held again, like the original.
    expect(replay.locator("h2")).to_contain_text("held for approval", timeout=30_000)
    expect(page.locator("section[aria-label=original] tbody tr")).to_have_count(3)
    expect(replay.locator("tbody tr")).to_have_count(3)
    shoot(page, "08-replay-side-by-side")
    no_csp_violations(console_errors)


def test_a_reviewer_sees_a_held_call_in_the_context_of_its_run(page, ui_server, browser_setup, console_errors):
    import uuid

    run_id = str(uuid.uuid4())
    planner = finished(browser_setup.submit("[task:general] [confidence:mini=0.9,flagship=0.9] plan the refund",
                                            task_type="general", run_id=run_id, run_role="planner"))
    helper = finished(browser_setup.submit("[task:classification] [confidence:nano=0.95] which queue",
                                           run_id=run_id, run_role="subagent"))
    held = finished(browser_setup.submit(UNSURE, run_id=run_id, run_role="subagent"))
    assert (planner.status, helper.status, held.status) == (JobStatus.COMPLETED, JobStatus.COMPLETED,
                                                            JobStatus.AWAITING_APPROVAL)
    sign_in(page, ui_server, UserFactory(roles=[Role.REVIEWER]))
    page.goto(f"{ui_server}/jobs/{held.pk}/")
    expect(page.locator(".run-context")).to_contain_text("Part of an agent run")
    expect(page.locator(".run-context")).to_contain_text("3 calls so far")
    page.locator(".run-context").get_by_role("link").click()
    expect(page.locator("h1")).to_contain_text(f"Run {run_id}")
    rows = page.locator("table.run-calls tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("planner")
    expect(page.locator("table.run-calls tr[aria-current='true']")).to_contain_text(str(held.pk)[:8])
    expect(page.locator("table.run-calls tr[aria-current='true']")).to_contain_text("held for approval")
    shoot(page, "09-run-held-in-context")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Runs").click()
    page.get_by_label("with a held call").check()
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table.data tbody")).to_contain_text(run_id[:8])
    shoot(page, "10-runs-list")
    no_csp_violations(console_errors)
