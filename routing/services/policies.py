"""Policies and their immutable versions: create (validated), submit, activate (four-eyes), retire."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from audit import ledger
from audit.ledger import Actor
from routing.models import ModelDeployment, Policy, PolicyVersion, PolicyVersionStatus
from routing.pipeline.facts import deployment_info
from routing.policy.document import InvalidPolicy, PolicyDocument, load_policy
from routing.router import validate_against_catalog


class PolicyActionError(Exception):
    """The act is not allowed; the message says why."""


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
    author,
    comment: str = "",
    parent: PolicyVersion | None = None,
    actor: Actor | None = None,
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
            },
        )
    return version


def policy_version_submit(*, version: PolicyVersion, user) -> PolicyVersion:
    with transaction.atomic():
        locked = PolicyVersion.objects.select_for_update().get(pk=version.pk)
        if locked.status != PolicyVersionStatus.DRAFT:
            raise PolicyActionError(f"only a draft can be submitted; this version is {locked.status}")
        locked.status = PolicyVersionStatus.PENDING
        locked.submitted_by = user
        locked.save(update_fields=["status", "submitted_by"])
        ledger.append(
            "policy_version.submitted",
            actor=_actor(user),
            subject={"policy_version": locked.pk},
            body={"sha256": locked.sha256},
        )
    return locked


def policy_version_activate(*, version: PolicyVersion, user) -> PolicyVersion:
    """Make `version` the one new jobs run under. Where four-eyes is on, not by its author."""
    with transaction.atomic():
        policy = Policy.objects.select_for_update().get(pk=version.policy_id)
        locked = PolicyVersion.objects.select_for_update().get(pk=version.pk)
        if locked.status not in (PolicyVersionStatus.DRAFT, PolicyVersionStatus.PENDING):
            raise PolicyActionError(
                f"this version is {locked.status}; only a draft or submitted version can be activated"
            )
        if policy.four_eyes and user is not None and locked.author_id == user.pk:
            raise PolicyActionError("four-eyes: the author of a version cannot activate it; another admin must")
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
            actor=_actor(user),
            subject={"policy_version": locked.pk},
            body={
                "policy": policy.name,
                "number": locked.number,
                "sha256": locked.sha256,
                "retired": previous.pk if previous else None,
            },
        )
    return locked


def _actor(user) -> Actor:
    # No user: a system act (the demo seed); callers acting for something else pass `actor`.
    return Actor.user(user.pk) if user is not None else Actor.system("policy-service")
