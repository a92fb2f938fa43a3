"""Replaying past jobs under a version from its page: a policy admin asks, the request is a ledger event in
the same transaction as the run row, a real worker runs it with a progress bar the page polls, and the page
opens the report when it is done. Bad input gets a clear error and starts nothing."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import LedgerEvent
from controlplane.roles import Role
from evaluation.queued_replays import history_replay_execute
from routing.models import Evaluation, HistoryReplayRun, HistoryReplayStatus
from routing.services.policies import policy_version_create
from tests.support.builders import replayable_history
from tests.support.factories import UserFactory
from tests.support.governed import governed
from tests.support.workers import wait_for
from web import charts


@pytest.fixture
def history(db):
    return replayable_history()


def start_url(version) -> str:
    return reverse("policy-history-replay", args=[version.policy.name, version.number])


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def test_the_version_page_offers_the_replay_to_policy_admins_only(as_user, history):
    draft, _, _ = history
    url = reverse("policy-version", args=[draft.policy.name, draft.number])
    page = text(as_user("admin").get(url))
    assert f'action="{start_url(draft)}#replay"' in page
    assert "Full re-execution spends money:" in page
    for persona in ("reviewer", "auditor"):
        assert "Start the replay" not in text(as_user(persona).get(url))


def test_a_routing_only_replay_is_queued_with_its_ledger_event_and_a_task_after_commit(
    as_user, people, history, django_capture_on_commit_callbacks
):
    draft, application, _ = history
    admin = as_user("admin")  # signed in first: a sign-in's own commit is not the replay's
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin.post(start_url(draft), {
            "application": application.slug, "since": "", "until": "", "limit": "50", "mode": "routing",
        })
    run = HistoryReplayRun.objects.get(policy_version=draft)
    assert response.status_code == 302 and response["Location"] == reverse("history-replay", args=[run.pk])
    assert (run.status, run.mode, run.requested_by) == ("queued", "routing", people["admin"])
    assert run.parameters == {"application": application.slug, "since": None, "until": None, "limit": 50,
                              "cost_cap_usd": None}
    event = LedgerEvent.objects.get(event_type="history_replay.requested", subject_policy_version=draft.pk)
    assert event.document["body"]["run"] == run.pk and event.document["actor"] == {
        "kind": "user", "id": str(people["admin"].pk)}
    assert len(callbacks) == 1  # the task is sent only once the row and the event are committed


def test_a_full_replay_keeps_its_cost_cap_and_window(as_user, history, django_capture_on_commit_callbacks):
    draft, _, _ = history
    with django_capture_on_commit_callbacks():
        as_user("admin").post(start_url(draft), {"since": "2026-01-01", "until": "2026-01-31", "limit": "10",
                                                 "mode": "full", "cost_cap_usd": "2.50"})
    run = HistoryReplayRun.objects.get(policy_version=draft)
    assert (run.mode, run.parameters["cost_cap_usd"]) == ("full", "2.50")
    # Days are inclusive in the form; the service takes [since, until) in UTC.
    assert (run.parameters["since"], run.parameters["until"]) == ("2026-01-01T00:00:00+00:00",
                                                                  "2026-02-01T00:00:00+00:00")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mode": "full"}, "Full re-execution calls real deployments: it needs a cost cap in USD (&gt; 0)."),
        ({"mode": "routing", "cost_cap_usd": "5"},
         "A cost cap applies to full re-execution only (routing mode calls no model)."),
        ({"mode": "full", "cost_cap_usd": "0"}, "The cost cap must be a finite amount above 0 USD, not 0."),
        ({"mode": "full", "cost_cap_usd": "five"}, "Enter a number."),
        ({"mode": "shadow"}, "Select a valid choice. shadow is not one of the available choices."),
        ({"mode": "routing", "limit": "0"}, "Ensure this value is greater than or equal to 1."),
        ({"mode": "routing", "since": "2026-03-02", "until": "2026-03-01"}, "The window ends before it starts."),
        ({"mode": "routing", "since": "last tuesday"}, "Enter a valid date."),
        ({"mode": "routing", "application": "no-such-app"}, "Select a valid choice."),
    ],
)
def test_bad_input_is_refused_with_a_clear_error_and_starts_nothing(as_user, history, data, message):
    draft, _, _ = history
    response = as_user("admin").post(start_url(draft), {"limit": "100", **data})
    assert response.status_code == 400
    page = text(response)
    assert message in page
    assert '<p class="error" role="alert">' in page  # shown at the form, on the version page
    assert not HistoryReplayRun.objects.filter(policy_version=draft).exists()
    requested = LedgerEvent.objects.filter(event_type="history_replay.requested", subject_policy_version=draft.pk)
    assert not requested.exists()


def test_a_replay_of_a_missing_version_is_a_404(as_user, history):
    draft, _, _ = history
    url = reverse("policy-history-replay", args=[draft.policy.name, 99])
    assert as_user("admin").post(url, {"mode": "routing", "limit": "5"}).status_code == 404


def test_the_worker_side_runs_it_reports_progress_links_the_report_and_never_runs_it_twice(as_user, people, history):
    draft, application, _ = history
    run = HistoryReplayRun.objects.create(policy_version=draft, requested_by=people["admin"], mode="routing",
                                          parameters={"application": application.slug, "limit": 100})
    finished = history_replay_execute(run_id=run.pk)
    assert (finished.status, finished.done, finished.total) == ("done", 4, 4)
    assert finished.evaluation.report["final_tier_changed"] == 1
    assert finished.evaluation.policy_version == draft
    assert history_replay_execute(run_id=run.pk) is None  # a second delivery finds nothing to claim
    assert Evaluation.objects.filter(policy_version=draft).count() == 1


def test_a_replay_that_raises_is_marked_failed_and_the_page_says_why(as_user, people, history):
    draft, _, _ = history
    # A row whose parameters the service cannot use (written by hand: the form never allows it).
    run = HistoryReplayRun.objects.create(policy_version=draft, requested_by=people["admin"], mode="routing",
                                          parameters={"limit": -1})
    history_replay_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and "Negative indexing is not supported" in run.error
    page = text(as_user("admin").get(reverse("history-replay", args=[run.pk]), HTTP_HX_REQUEST="true"))
    assert "Negative indexing is not supported" in page and "hx-trigger" not in page


def test_the_progress_partial_polls_until_the_end_and_then_opens_the_report(as_user, people, history):
    draft, application, _ = history
    run = HistoryReplayRun.objects.create(policy_version=draft, requested_by=people["admin"], mode="routing",
                                          parameters={"application": application.slug, "limit": 100})
    url = reverse("history-replay", args=[run.pk])
    queued = as_user("auditor").get(url, HTTP_HX_REQUEST="true")
    assert "<html" not in queued.content.decode()
    assert 'hx-trigger="every 1s"' in text(queued) and "Waiting for a worker…" in text(queued)
    HistoryReplayRun.objects.filter(pk=run.pk).update(status="running", done=40, total=160,
                                                      heartbeat_at=timezone.now())
    running = text(as_user("auditor").get(url, HTTP_HX_REQUEST="true"))
    assert '<progress id="replay-bar" max="100" value="25">25%</progress>' in running
    assert "40 of 160 jobs" in running and 'hx-trigger="every 1s"' in running
    HistoryReplayRun.objects.filter(pk=run.pk).update(status="queued")
    history_replay_execute(run_id=run.pk)
    run.refresh_from_db()
    done = as_user("auditor").get(url, HTTP_HX_REQUEST="true")
    assert done["HX-Redirect"] == reverse("evaluation", args=[run.evaluation_id])
    page = text(as_user("auditor").get(url))  # without htmx: the page, with a link to the report
    assert f'href="/evaluations/{run.evaluation_id}/"' in page and "hx-trigger" not in page


def test_a_run_no_worker_has_touched_for_a_while_says_so(as_user, people, history):
    draft, _, _ = history
    quiet = timezone.now() - timedelta(minutes=7)
    run = HistoryReplayRun.objects.create(policy_version=draft, requested_by=people["admin"], mode="routing",
                                          status=HistoryReplayStatus.RUNNING, done=3, total=10, heartbeat_at=quiet)
    page = text(as_user("admin").get(reverse("history-replay", args=[run.pk])))
    assert "No word from a worker for 7 min." in page and "may have stopped" in page
    HistoryReplayRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())
    assert "No word from a worker" not in text(as_user("admin").get(reverse("history-replay", args=[run.pk])))


def test_a_missing_run_is_a_404(as_user, db):
    assert as_user("admin").get(reverse("history-replay", args=[987654321])).status_code == 404


def test_a_full_replay_started_here_spends_within_its_cap_and_the_report_says_what_it_spent(
    as_user, model_server, db, django_capture_on_commit_callbacks
):
    from tests.support.evaluations import LIMITED, LOWER, content, past_job

    setup = governed(model_server.base_url, policy_source=LIMITED)
    live = setup.policy.versions.get()
    for index in range(3):
        past_job(setup.application, live, content(index, 0.75),
                 [("nano", 0.75, False, "A", 0.0001), ("mini", 0.9, True, "B", 0.0004)])
    draft = policy_version_create(policy=setup.policy, source=LOWER, author=None, parent=live)
    with django_capture_on_commit_callbacks():
        as_user("admin").post(start_url(draft), {"application": setup.application.slug, "limit": "10",
                                                 "mode": "full", "cost_cap_usd": "0.50"})
    run = history_replay_execute(run_id=HistoryReplayRun.objects.get(policy_version=draft).pk)
    report = run.evaluation.report
    assert (run.status, run.done, run.total) == ("done", 3, 3)
    assert (report["mode"], report["executed"], report["cost_cap_usd"]) == ("full", 3, 0.5)
    assert 0 < report["spent_usd"] <= 0.5
    page = text(as_user("admin").get(reverse("evaluation", args=[run.evaluation_id])))
    assert "Re-execution under a cost cap" in page and "<dt>Cost cap</dt><dd>$0.50</dd>" in page
    assert f"<dt>Spent</dt><dd>{charts.usd(report['spent_usd'])}</dd>" in page
    assert "<dt>Jobs executed</dt><dd>3</dd>" in page and "<dt>Stopped at the cap</dt><dd>no</dd>" in page


@pytest.mark.slow
def test_a_real_worker_runs_the_replay_the_admin_started(live_db, workers):
    draft, application, _ = replayable_history()
    admin = UserFactory(roles=[Role.POLICY_ADMIN])
    client = Client()
    client.force_login(admin)
    workers.start()
    response = client.post(start_url(draft), {"application": application.slug, "limit": "100", "mode": "routing"})
    run = HistoryReplayRun.objects.get(policy_version=draft)
    assert response["Location"] == reverse("history-replay", args=[run.pk])

    def finished():
        run.refresh_from_db()
        return run.finished

    wait_for(finished, timeout=60, message="the replay to finish")
    assert (run.status, run.done, run.total, run.error) == ("done", 4, 4, "")
    assert run.evaluation.report["final_tier_transitions"] == {"mini->nano": 1}
    assert client.get(reverse("history-replay", args=[run.pk]), HTTP_HX_REQUEST="true")["HX-Redirect"] == reverse(
        "evaluation", args=[run.evaluation_id]
    )
