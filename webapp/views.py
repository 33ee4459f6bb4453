from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.views.static import serve

# Request headers that would make an answer depend on the file's time or content hash.
CONDITIONAL_HEADERS = (
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_IF_UNMODIFIED_SINCE",
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MATCH",
    "HTTP_IF_RANGE",
)


def _media_allowed(user, path: str) -> bool:
    """Whether `user` may fetch a stored file: superusers; staff who may view batches or
    images; a researcher granted a study that one of the file's images belongs to. Raters
    never: they see images through per-impression URLs.
    """
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    if user.is_staff and (
        user.has_perm("generation.view_promptbatch") or user.has_perm("generation.view_image")
    ):
        return True
    from django.db.models import Q

    from generation.models import Image
    from ratings.models import StudyGrant

    studies = Image.objects.filter(Q(file=path) | Q(preview=path)).values("prompt__batch__study_id")
    return StudyGrant.objects.filter(user=user, study_id__in=studies).exists()


def media(request: HttpRequest, path: str) -> HttpResponse:
    """Serve local media (rendered images) by stored name to those who may see them.

    Raters never get a stored name: they see images through per-impression URLs
    (ratings.voting.images); anyone else, a researcher of another study among them, gets the
    same 404 as for a file that does not exist.
    """
    if not _media_allowed(request.user, path):
        raise Http404("No such file.")
    # The same answer whatever date or tag a request names: no 304 that tells a file's time.
    for header in CONDITIONAL_HEADERS:
        request.META.pop(header, None)
    # Settings are read per request: tests give each test its own media folder.
    response = serve(request, path, document_root=settings.MEDIA_ROOT)
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    del response["Last-Modified"]
    return response


def healthz(request: HttpRequest) -> HttpResponse:
    """Answer "ok" with no database or session work: for load balancers and the benchmark."""
    return HttpResponse("ok", content_type="text/plain")


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page says: send them to the SVG icon."""
    from django.templatetags.static import static

    return HttpResponsePermanentRedirect(static("favicon.svg"))
