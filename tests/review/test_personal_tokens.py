"""A person's token for the review API: it is its person (their roles and the four-eyes rules at the moment
of use), narrowed to its scopes; it stops when revoked, expired or its person is deactivated; a person
mints, sees and revokes only their own, each a ledger event; the plaintext is shown once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import LedgerEvent
from controlplane.roles import Role
from routing.models import ApprovalDecision, Job, JobStatus, PersonalToken
from routing.services.personal_tokens import TokenRefused, personal_token_create
from tests.support.builders import active_policy, held_job
from tests.support.factories import UserFactory
from tests.support.personas import client_with, key_for

CONTENT = "Refunding 80417 to the customer."


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def version(db):
    return active_policy()


def held(version, required: int = 1) -> Job:
    return held_job(version=version, rule="refunds-over-100", content=CONTENT, required=required)


def token_for(user, *scopes: str, days: int = 7) -> str:
    _, plaintext = personal_token_create(
        user=user, name="review bot", scopes=list(scopes), expires_at=timezone.now() + timedelta(days=days)
    )
    return plaintext


def bearer(raw: str) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)  # a token needs no CSRF token: it is not a cookie
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def decide(client, job, action: str = "approve", **body):
    version = Job.objects.get(pk=job.pk).version
    return client.post(f"/api/v1/review/jobs/{job.pk}/{action}", {"expected_version": version, **body}, format="json")


def reviewer(**fields):
    return UserFactory(roles=[Role.REVIEWER], **fields)


# --- the review API with a token --------------------------------------------------------------------


def test_a_reviewers_token_lists_and_decides_as_that_reviewer(version):
    job = held(version)
    person = reviewer()
    client = bearer(token_for(person, "reviews:decide"))

    listed = client.get("/api/v1/review/jobs")
    assert listed.status_code == 200, listed.json()
    assert str(job.pk) in [row["id"] for row in listed.json()["results"]]
    assert "80417" not in listed.content.decode()  # the held answer is in no response, as for a session

    response = decide(client, job, reason="checked against the order")
    assert response.status_code == 200, response.json()
    assert Job.objects.get(pk=job.pk).status == JobStatus.COMPLETED
    decision = ApprovalDecision.objects.get(request__job=job)
    assert decision.actor == person  # the token's person, not an application or a bot
    event = LedgerEvent.objects.filter(subject_job=job.pk, event_type="approval.approved").get()
    assert (event.actor_kind, event.actor_id) == ("user", str(person.pk))


def test_a_token_is_bound_by_its_persons_four_eyes_rules(version):
    job = held(version, required=2)
    person = reviewer()
    token = bearer(token_for(person, "reviews:decide"))
    assert decide(token, job).status_code == 200
    session = APIClient()
    session.force_login(person)
    again = decide(session, job)  # the same person through another door: still one decision
    assert again.status_code == 403 and again.json()["code"] == "already_decided"
    own = held_job(version=version, rule="refunds-over-100", content=CONTENT, submitted_by=person)
    mine = decide(token, own)
    assert mine.status_code == 403 and mine.json()["code"] == "own_job"
    assert Job.objects.get(pk=job.pk).status == JobStatus.AWAITING_APPROVAL


def test_a_read_only_token_reads_but_decides_nothing(version):
    job = held(version)
    client = bearer(token_for(reviewer(), "reviews:read"))
    assert client.get(f"/api/v1/review/jobs/{job.pk}").status_code == 200
    refused = decide(client, job)
    assert refused.status_code == 403
    assert refused.json()["code"] == "token_scope"
    assert "reviews:decide" in refused.json()["detail"]
    assert Job.objects.get(pk=job.pk).status == JobStatus.AWAITING_APPROVAL


def test_a_token_stops_when_revoked_expired_or_its_person_is_deactivated_or_loses_the_role(version):
    job = held(version)
    revoked, expired, deactivated, demoted = reviewer(), reviewer(), reviewer(), reviewer()
    tokens = {name: token_for(person, "reviews:decide") for name, person in
              [("revoked", revoked), ("expired", expired), ("deactivated", deactivated), ("demoted", demoted)]}
    PersonalToken.objects.filter(user=revoked).update(revoked_at=timezone.now())
    PersonalToken.objects.filter(user=expired).update(expires_at=timezone.now() - timedelta(seconds=1))
    deactivated.is_active = False
    deactivated.save(update_fields=["is_active"])
    demoted.groups.remove(Group.objects.get(name=str(Role.REVIEWER)))

    for name in ("revoked", "expired", "deactivated"):
        response = decide(bearer(tokens[name]), job)
        assert response.status_code in (401, 403), name
        assert response.json()["code"] == "invalid_token", name
    response = decide(bearer(tokens["demoted"]), job)
    assert response.status_code == 403 and response.json()["code"] == "role_required"
    prefix = PersonalToken.objects.get(user=demoted).prefix
    wrong_secret = f"arbp_{prefix}_" + "x" * 43
    assert decide(bearer(wrong_secret), job).json()["code"] == "invalid_token"
    assert Job.objects.get(pk=job.pk).status == JobStatus.AWAITING_APPROVAL


def test_an_applications_key_is_still_refused_and_a_token_is_no_application_key(version):
    job = held(version)
    key = client_with(key_for(job.application, "jobs:read", "jobs:write", owner=reviewer()))
    assert decide(key, job).json()["code"] == "person_required"
    token = bearer(token_for(reviewer(), "reviews:decide"))
    assert token.get(f"/api/v1/jobs/{job.pk}").status_code == 401  # the jobs API takes application keys only


def test_minting_is_bounded(db):
    person = reviewer()
    with pytest.raises(TokenRefused, match="scopes must be"):
        personal_token_create(
            user=person, name="x", scopes=["jobs:write"], expires_at=timezone.now() + timedelta(days=1)
        )
    with pytest.raises(TokenRefused, match="within 90 days"):
        personal_token_create(
            user=person, name="x", scopes=["reviews:read"], expires_at=timezone.now() + timedelta(days=91)
        )
    assert not PersonalToken.objects.filter(user=person).exists()


# --- the tokens page ----------------------------------------------------------------------------------


def signed_in(user):
    client = APIClient()
    client.force_login(user)
    return client


def test_a_person_mints_a_token_shown_once_and_revokes_it_each_a_ledger_event(db):
    person = reviewer()
    client = signed_in(person)
    page = client.post("/review/tokens/new", {"name": "chat bot", "scopes": ["reviews:decide"], "days": "30"})
    assert page.status_code == 200
    assert page["Cache-Control"] == "no-store"
    token = PersonalToken.objects.get(user=person)
    text = page.content.decode()
    plaintext = text.split('id="new-token">', 1)[1].split("<", 1)[0]
    assert plaintext.startswith(f"arbp_{token.prefix}_")
    assert bearer(plaintext).get("/api/v1/review/jobs").status_code == 200
    listing = client.get("/review/tokens/").content.decode()
    assert f"arbp_{token.prefix}_…" in listing and plaintext not in listing  # never shown again

    assert client.post(f"/review/tokens/{token.prefix}/revoke").status_code == 302
    assert bearer(plaintext).get("/api/v1/review/jobs").json()["code"] == "invalid_token"
    ours = LedgerEvent.objects.filter(event_type__startswith="personal_token.", actor_id=str(person.pk)).order_by("id")
    events = [event for event in ours if event.body["prefix"] == token.prefix]
    assert [event.event_type for event in events] == ["personal_token.created", "personal_token.revoked"]
    assert all((event.actor_kind, event.actor_id) == ("user", str(person.pk)) for event in events)
    secret = plaintext.removeprefix(f"arbp_{token.prefix}_")
    assert len(secret) >= 40 and secret not in str([event.canonical for event in events])  # the secret is not logged


def test_another_persons_token_is_not_found_and_bad_input_is_a_400(db):
    mine = PersonalToken.objects.get(prefix=token_for(reviewer(), "reviews:read").split("_")[1])
    other = signed_in(reviewer())
    assert other.post(f"/review/tokens/{mine.prefix}/revoke").status_code == 404
    assert PersonalToken.objects.get(pk=mine.pk).revoked_at is None
    assert f"arbp_{mine.prefix}" not in other.get("/review/tokens/").content.decode()
    no_scope = other.post("/review/tokens/new", {"name": "x", "days": "30"})
    assert no_scope.status_code == 400 and "at least one scope" in no_scope.content.decode()
    too_long = other.post("/review/tokens/new", {"name": "x", "scopes": ["reviews:read"], "days": "400"})
    assert too_long.status_code == 400 and "within 90 days" in too_long.content.decode()


def test_the_tokens_page_needs_a_role_and_the_right_method(db):
    assert APIClient().get("/review/tokens/").status_code == 302  # to the sign-in page
    nobody = signed_in(UserFactory())
    assert nobody.get("/review/tokens/").status_code == 403
    person = signed_in(reviewer())
    assert person.get("/review/tokens/").status_code == 200
    assert person.get("/review/tokens/new").status_code == 405
    assert person.post("/review/tokens/").status_code == 405
