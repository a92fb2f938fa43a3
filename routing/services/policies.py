"""Policies and their immutable versions: create (validated), submit, activate (four-eyes), retire.

Four-eyes always holds, on every path (UI, admin API, commands): a version is activated only after it
was submitted, and by a person who is neither its author nor its submitter. There is no switch to turn
it off — a switch one admin can flip is a bypass. The one exception is the very first version of a
policy that has never had an active one (`policy_version_bootstrap`: the demo seed), which replaces
nothing that was governed."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from audit import ledger
from audit.ledger import Actor
from routing.decide.policy.document import PolicyDocument, load_policy
from routing.decide.policy.errors import InvalidPolicy
from routing.decide.router import validate_against_catalog
from routing.execute.facts import deployment_info
from routing.models import ModelDeployment, Policy, PolicyVersion, PolicyVersionStatus


class PolicyActionError(Exception):
    """The act is not allowed in the version's state; the message says why."""


class FourEyesRefused(PolicyActionError):
    """The person may not activate this version: it needs a second, different person."""


def policy_document_check(source: str) -> PolicyDocument:
    """Parse and validate `source` against the schema and the current catalog; raises InvalidPolicy."""
    document = load_policy(source)
    catalog = [deployment_info(deployment) for deployment in ModelDeployment.objects.filter(enabled=True)]
    errors = validate_against_catalog(document, catalog)
    if errors:
        raise InvalidPolicy(errors)
    return document


def policy_create(*, name: str, actor: Actor, description: str = "", is_default: bool = False) -> Policy:
    with transaction.atomic():
        if is_default:
            Policy.objects.filter(is_default=True).update(is_default=False)
        policy = Policy.objects.create(name=name, description=description, is_default=is_default)
        ledger.append("policy.created", actor=actor, subject={}, body={"policy": name, "default": is_default})
    return policy


def policy_version_create(
    *,
    policy: Policy,
    source: str,
    author: User | None,
    comment: str = "",
    parent: PolicyVersion | None = None,
    actor: Actor | None = None,
    via_key: str | None = None,
) -> PolicyVersion:
    """A new draft version. Invalid documents never reach the database (InvalidPolicy lists why)."""
    document = policy_document_check(source)
    with transaction.atomic():
        Policy.objects.select_for_update().get(pk=policy.pk)  # serialises version numbers per policy
        number = (policy.versions.aggregate(top=Max("number"))["top"] or 0) + 1
        version = PolicyVersion.objects.create(
            policy=policy,
            number=number,
            source=source,
            document=document.as_data(),
            sha256=document.sha256,
            author=author,
            comment=comment,
            parent=parent,
        )
        ledger.append(
            "policy_version.created",
            actor=actor or _actor(author),
            subject={"policy_version": version.pk},
            body={
                "policy": policy.name,
                "number": number,
                "sha256": version.sha256,
                "comment": comment,
                "parent": parent.pk if parent else None,
                **_via(via_key),
            },
        )
    return version


def policy_version_submit(*, version: PolicyVersion, user: User, via_key: str | None = None) -> PolicyVersion:
    with transaction.atomic():
        locked = PolicyVersion.objects.select_for_update().get(pk=version.pk)
        resubmission = locked.status == PolicyVersionStatus.PENDING and not _submitted_by_a_person(locked)
        if locked.status != PolicyVersionStatus.DRAFT and not resubmission:
            raise PolicyActionError(f"only a draft can be submitted; this version is {locked.status}")
        locked.status = PolicyVersionStatus.PENDING
        locked.submitted_by = user
        locked.save(update_fields=["status", "submitted_by"])
        ledger.append(
            "policy_version.submitted",
            actor=_actor(user),
            subject={"policy_version": locked.pk},
            body={"sha256": locked.sha256, **_via(via_key)},
        )
    return locked


def policy_version_activate(*, version: PolicyVersion, user: User | None, via_key: str | None = None) -> PolicyVersion:
    """Make `version` the one new jobs run under: a submitted version, by a person other than its author
    and its submitter."""
    if user is None or not user.is_active:
        raise FourEyesRefused("activation is a person's act: nobody is named as the activator")
    with transaction.atomic():
        policy = Policy.objects.select_for_update().get(pk=version.policy_id)
        locked = PolicyVersion.objects.select_for_update().get(pk=version.pk)
        if locked.status == PolicyVersionStatus.DRAFT:
            raise PolicyActionError(
                f"v{locked.number} is a draft that was never submitted: submit it first, then another admin "
                "activates it"
            )
        if locked.status != PolicyVersionStatus.PENDING:
            raise PolicyActionError(f"v{locked.number} is {locked.status}; only a submitted version can be activated")
        if not _submitted_by_a_person(locked):
            raise PolicyActionError(
                f"v{locked.number} was not submitted by an active person (submitter: "
                f"{locked.submitted_by.get_username() if locked.submitted_by else 'none'}): a person must submit "
                "it again before another admin activates it"
            )
        if user.pk in (locked.author_id, locked.submitted_by_id):
            role, did = ("author", "wrote") if user.pk == locked.author_id else ("submitter", "submitted")
            raise FourEyesRefused(
                f"four-eyes: the {role} of a version cannot activate it (you {did} v{locked.number}); "
                "another admin must"
            )
        return _activate(policy, locked, user=user, actor=_actor(user), via_key=via_key)


def policy_version_bootstrap(*, version: PolicyVersion, actor: Actor) -> PolicyVersion:
    """Activate the first version of a policy that has never had an active one (the demo seed): a system
    act with nothing governed before it to replace. Any later version goes through four-eyes."""
    with transaction.atomic():
        policy = Policy.objects.select_for_update().get(pk=version.policy_id)
        locked = PolicyVersion.objects.select_for_update().get(pk=version.pk)
        if policy.versions.filter(status__in=[PolicyVersionStatus.ACTIVE, PolicyVersionStatus.RETIRED]).exists():
            raise FourEyesRefused(
                f"policy {policy.name!r} has been active before: a new version needs submission and a second admin"
            )
        return _activate(policy, locked, user=None, actor=actor, via_key=None)


def _activate(
    policy: Policy, locked: PolicyVersion, *, user: User | None, actor: Actor, via_key: str | None
) -> PolicyVersion:
    previous = policy.versions.filter(status=PolicyVersionStatus.ACTIVE).first()
    if previous is not None:
        previous.status = PolicyVersionStatus.RETIRED
        previous.save(update_fields=["status"])
    locked.status = PolicyVersionStatus.ACTIVE
    locked.activated_by = user
    locked.activated_at = timezone.now()
    locked.save(update_fields=["status", "activated_by", "activated_at"])
    ledger.append(
        "policy_version.activated",
        actor=actor,
        subject={"policy_version": locked.pk},
        body={
            "policy": policy.name,
            "number": locked.number,
            "sha256": locked.sha256,
            "retired": previous.pk if previous else None,
            **_via(via_key),
        },
    )
    return locked


def _submitted_by_a_person(version: PolicyVersion) -> bool:
    # Before keys acted for people, a key submitted as the inactive principal `app:<slug>`, behind which
    # any admin could stand — so such a submission (or one by a since-deactivated account) counts for nothing.
    return version.submitted_by is not None and version.submitted_by.is_active


def _via(via_key: str | None) -> dict:
    # The key prefix beside the person: the ledger says who acted and through which of their keys.
    return {"via_key": via_key} if via_key else {}


def _actor(user: User | None) -> Actor:
    # No user: a system act (the demo seed); callers acting for something else pass `actor`.
    return Actor.user(user.pk) if user is not None else Actor.system("policy-service")
