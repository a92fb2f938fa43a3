"""Applications: their spend against budget, their API keys (created — shown once —, revoked), budgets."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Count, Q, Sum
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from audit.ledger import Actor
from routing import selectors
from routing.execute.addresses import UnsafeAddress
from routing.execute.budgets import budget_state, month_start
from routing.models import Application, Step
from routing.services.catalog import application_budget_set, application_review_notify_set
from routing.services.keys import KeyRefused, api_key_create, api_key_revoke
from routing.ui.forms import ApiKeyForm, BudgetForm, ReviewNotifyForm
from web.access import ADMIN_READERS, POLICY_ADMINS, can, role_required


def _application(slug: str) -> Application:
    application = selectors.application_get(slug=slug)
    if application is None:
        raise Http404("no such application")
    return application


@require_GET
@role_required(*ADMIN_READERS)
def application_list(request: HttpRequest) -> HttpResponse:
    applications = list(
        selectors.application_list().annotate(live_keys=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True)))
    )
    # One grouped read of this month's steps (step_tier_created), not one per application.
    spend = dict(
        Step.objects.filter(created_at__gte=month_start(), job__application__in=applications)
        .values("job__application_id").annotate(total=Sum("cost_usd")).values_list("job__application_id", "total")
    )
    for application in applications:
        application.month_spend = spend.get(application.pk) or 0
    return render(request, "applications/list.html", {"applications": applications})


def _detail(request: HttpRequest, application: Application, **extra) -> dict:
    return {
        "application": application,
        "keys": list(selectors.api_key_list(application=application)),
        "budget": budget_state(application),
        "key_form": ApiKeyForm(),
        "budget_form": BudgetForm(initial={
            "monthly_soft_limit_usd": application.monthly_soft_limit_usd,
            "monthly_hard_limit_usd": application.monthly_hard_limit_usd,
        }),
        "notify_form": ReviewNotifyForm(initial={"review_notify_url": application.review_notify_url}),
        "can_edit": can(request.user, *POLICY_ADMINS),
        "now": timezone.now(),
        **extra,
    }


@require_GET
@role_required(*ADMIN_READERS)
def application_detail(request: HttpRequest, slug: str) -> HttpResponse:
    return render(request, "applications/detail.html", _detail(request, _application(slug)))


@require_POST
@role_required(*POLICY_ADMINS)
def api_key_new(request: HttpRequest, slug: str) -> HttpResponse:
    """The plaintext is in this response only: rendered, not redirected, and never cached."""
    application = _application(slug)
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return render(request, "applications/detail.html", _detail(request, application, key_form=form), status=400)
    try:
        key, plaintext = api_key_create(
            application=application,
            scopes=form.cleaned_data["scopes"],
            created_by=request.user,
            name=form.cleaned_data["name"],
            expires_at=form.expires_at(),
        )
    except KeyRefused as refused:
        form.add_error("scopes", str(refused))
        return render(request, "applications/detail.html", _detail(request, application, key_form=form), status=403)
    response = render(request, "applications/detail.html", _detail(request, application, new_key=key,
                                                                    plaintext=plaintext))
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@role_required(*POLICY_ADMINS)
def api_key_revoke_view(request: HttpRequest, slug: str, prefix: str) -> HttpResponse:
    application = _application(slug)
    key = selectors.api_key_get(application=application, prefix=prefix)
    if key is None:
        raise Http404("no such key")
    api_key_revoke(key=key, actor=Actor.user(request.user.pk))
    messages.success(request, f"key {prefix}… is revoked; requests with it are refused from now on.")
    return redirect("application", slug)


@require_POST
@role_required(*POLICY_ADMINS)
def application_budget(request: HttpRequest, slug: str) -> HttpResponse:
    application = _application(slug)
    form = BudgetForm(request.POST)
    if not form.is_valid():
        return render(request, "applications/detail.html", _detail(request, application, budget_form=form),
                      status=400)
    application_budget_set(
        application=application,
        actor=Actor.user(request.user.pk),
        soft_limit_usd=form.cleaned_data["monthly_soft_limit_usd"],
        hard_limit_usd=form.cleaned_data["monthly_hard_limit_usd"],
    )
    messages.success(request, "the budget is saved.")
    return redirect("application", slug)


@require_POST
@role_required(*POLICY_ADMINS)
def application_review_notify(request: HttpRequest, slug: str) -> HttpResponse:
    application = _application(slug)
    form = ReviewNotifyForm(request.POST)
    if form.is_valid():
        try:
            application_review_notify_set(
                application=application, actor=Actor.user(request.user.pk), url=form.cleaned_data["review_notify_url"]
            )
        except UnsafeAddress as refused:
            form.add_error("review_notify_url", str(refused))
    if not form.is_valid():
        return render(request, "applications/detail.html", _detail(request, application, notify_form=form),
                      status=400)
    messages.success(request, "reviewers are told of held jobs there." if form.cleaned_data["review_notify_url"]
                     else "reviewers are no longer told of held jobs.")
    return redirect("application", slug)
