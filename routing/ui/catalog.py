"""The model catalog: deployments with prices and the live state of their circuit breakers."""

from __future__ import annotations

import logging

import redis
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from audit.ledger import Actor
from routing import selectors
from routing.decide.tiers import tier_rank
from routing.execute.breaker import CircuitBreaker
from routing.services.catalog import deployment_update
from web.access import ADMIN_READERS, POLICY_ADMINS, can, role_required

logger = logging.getLogger(__name__)


@require_GET
@role_required(*ADMIN_READERS)
def catalog(request: HttpRequest) -> HttpResponse:
    # Cheapest tier first, then the order the router tries them in.
    deployments = sorted(selectors.deployment_list(), key=lambda d: (tier_rank(d.tier) or 0, d.priority, d.name))
    try:
        for deployment in deployments:
            deployment.breaker = CircuitBreaker(deployment.name).state()
        breakers_known = True
    except redis.RedisError:
        logger.warning("catalog: circuit breaker state unavailable", exc_info=True)
        breakers_known = False
    return render(request, "catalog/deployments.html", {
        "deployments": deployments, "breakers_known": breakers_known, "can_edit": can(request.user, *POLICY_ADMINS),
    })


@require_POST
@role_required(*POLICY_ADMINS)
def deployment_toggle(request: HttpRequest, name: str) -> HttpResponse:
    deployment = selectors.deployment_get(name=name)
    if deployment is None:
        raise Http404("no such deployment")
    enabled = request.POST.get("enabled") == "true"
    deployment_update(deployment=deployment, actor=Actor.user(request.user.pk), enabled=enabled)
    messages.success(request, f"{name} is {'enabled' if enabled else 'disabled'}.")
    return redirect("catalog")
