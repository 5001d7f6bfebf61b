"""A newcomer's first comparisons: one question at a time, answered, skipped or ended with "enough"; htmx swaps
the question card and the map after each answer, and a plain form post works the same without it."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from alignment_site.access import participant_required
from users.chat.style import map_points, nearest_on_map
from users.newcomer import selectors, services
from users.survey.services import survey_is_complete


def _page(request, onboarding, pool, *, error: str = "", status: int = 200):
    points, user_id = selectors.map_with_newcomer(request.user, onboarding, pool)
    me, neighbours = nearest_on_map(points, user_id)
    context = {"onboarding": onboarding, "question": selectors.question(onboarding, pool),
               "progress": selectors.progress(onboarding), "error": error,
               "points": map_points(points, me, neighbours, named=False) if me else [],
               "distance": neighbours[0]["distance"] if neighbours else None}
    template = "newcomer/_card.html" if request.htmx else "newcomer/onboarding.html"
    return render(request, template, context, status=status)


def _done(request):
    """Onboarding is over (or not due): on to chat; htmx follows with a full page load."""
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("chat_list")
        return response
    return redirect("chat_list")


@never_cache
@login_required
@participant_required
def onboarding(request):
    if not survey_is_complete(request.user):
        return redirect(reverse("survey") + "?next=" + reverse("onboarding"))
    try:
        current, pool = services.onboarding_begin(user=request.user)
    except services.NotDue:
        return redirect("chat_list")
    if current.status != current.Status.ASKING:
        return _done(request)
    return _page(request, current, pool)


@require_POST
@login_required
@participant_required
def onboarding_answer(request):
    action, key = request.POST.get("action", ""), request.POST.get("key", "")
    error = ""
    try:
        if action == "enough":
            services.onboarding_enough(user=request.user)
            return _done(request)
        if action == "skip":
            current = services.onboarding_skip(user=request.user, key=key)
        else:
            current = services.onboarding_answer(user=request.user, key=key, choice=action)
        pool = selectors.pool_for(current.run)
    except services.NotDue:
        return _done(request)
    except ValidationError as exc:  # shown above the question asked now
        (current, pool), error = services.onboarding_begin(user=request.user), " ".join(exc.messages)
    if current.status != current.Status.ASKING:
        return _done(request)
    return _page(request, current, pool, error=error, status=422 if error else 200)
