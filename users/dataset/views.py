"""Downloads (a participant gets their own data, staff everyone's) and the staff dataset pages."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import redirect, render

from alignment_site.access import staff_required
from alignment_site.streaming import streamed
from trainer.core.pairing import DEFAULT as DEFAULT_PAIRING
from trainer.core.pairing import STRATEGIES as PAIRINGS
from users.consent import consented
from users.collection.pairs import pairs_export_lines
from users.dataset import browse, selectors
from users.dataset.chats import chat_export_lines
from users.dataset.forms import ImportForm
from users.models import Conversation
from users.prism.importer import prism_import
from users.prism.schema import FILES, PrismImportError
from users.prism.writer import prism_export_lines

EXPORTS = ("pairs", "chats", *FILES)


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@login_required
def data_export(request, name: str):
    """``pairs``, ``chats`` (chats and blind comparisons), ``survey``, ``conversations`` or ``utterances`` as JSONL. Staff may add ?user=<username or id>.

    A participant gets their own data whatever its state. Staff's exports leave out the people who withdrew,
    and the pairs (training data) also those without consent (their records stay in the PRISM files, which
    round-trip what was imported)."""
    if name not in EXPORTS:
        raise Http404
    if request.user.is_staff:
        person = request.GET.get("user")  # a username, or the user_id the exports carry
        everyone = get_user_model().objects.filter(
            **(consented() if name == "pairs" else {"profile__withdrawn_at__isnull": True}))
        users = everyone.filter(pk__in=[u.pk for u in selectors.people_named([person])[0]]) if person else everyone
    else:
        users = [request.user]
    if name == "chats":
        lines = chat_export_lines(users=users)
    elif name == "pairs":
        pairing = request.GET.get("pairing") or DEFAULT_PAIRING
        if pairing not in PAIRINGS:
            return HttpResponseBadRequest(f"Unknown pairing {pairing!r}: choose one of {', '.join(PAIRINGS)}.",
                                          content_type="text/plain; charset=utf-8")
        lines = pairs_export_lines(users=users, min_margin=_int(request.GET.get("min_margin"), 1),
                                   with_profile=request.GET.get("profile") == "1", pairing=pairing)
    else:
        lines = prism_export_lines(file=name, users=users)
    response = StreamingHttpResponse(streamed(request, lines), content_type="application/x-ndjson; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}.jsonl"'
    return response


@staff_required
def dataset(request):
    min_margin = max(1, _int(request.GET.get("min_margin"), 1))
    page = Paginator(selectors.people_with_data(), 50).get_page(request.GET.get("page"))
    return render(request, "dataset/dataset.html", {
        "counts": selectors.dataset_counts(min_margin=min_margin), "histogram": selectors.score_histogram(),
        "people": selectors.people_rows(page, min_margin=min_margin), "page": page, "min_margin": min_margin,
    })


@staff_required
def dataset_import(request):
    size = int(request.META.get("CONTENT_LENGTH") or 0)
    if request.method == "POST" and size > settings.UPLOAD_MAX_MB * 2**20:  # refused before it is read
        return render(request, "dataset/import.html", {
            "form": ImportForm(), "error": f"Refused, nothing kept: the upload is {size / 2**20:,.0f} MB and this "
                                          f"page takes at most {settings.UPLOAD_MAX_MB} MB (UPLOAD_MAX_MB). Import "
                                          "larger files on the server with: python manage.py import_prism"},
            status=413)
    form = ImportForm(request.POST or None, request.FILES or None)
    error = None
    if request.method == "POST" and form.is_valid():
        files = {name: form.cleaned_data[name] for name in FILES if form.cleaned_data.get(name)}
        try:
            reports = prism_import(files=files, names={k: f.name for k, f in files.items()})
        except PrismImportError as exc:
            error = f"Refused, nothing kept from that file: {exc}"
        else:
            for report in reports:
                messages.success(request, str(report))
            return redirect("dataset")
    return render(request, "dataset/import.html", {"form": form, "error": error},
                  status=422 if error or form.errors else 200)


@staff_required
def browse_conversations(request):
    return _browse(request, browse.conversations, "dataset/browse_conversations.html")


@staff_required
def browse_pairs(request):
    return _browse(request, browse.pairs, "dataset/browse_pairs.html")


def _browse(request, rows, template: str):
    filters = browse.Filters.from_query(request.GET)
    page = Paginator(rows(filters), browse.PER_PAGE).get_page(request.GET.get("page"))
    return render(request, template, {"page": page, "filters": filters, "kinds": Conversation.Kind.choices})


@staff_required
def raters(request):
    """How carefully each person rated, flagged people first (``users.raters``)."""
    from users.dataset.raters import rater_rows
    from users.prism.ids import exported_user_id

    rows = [(exported_user_id(user, getattr(user, "profile", None)), row,
             [round(100 * n / max(max(row.histogram), 1)) for n in row.histogram]) for user, row in rater_rows()]
    return render(request, "dataset/raters.html", {"rows": rows, "flagged": sum(1 for _, r, _ in rows if r.flags)})
