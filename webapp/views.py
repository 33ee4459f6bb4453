from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.views.static import serve


def media(request: HttpRequest, path: str) -> HttpResponse:
    """Serve local media (rendered images) when no front server or S3 bucket does."""
    # Settings are read per request: tests give each test its own media folder.
    response = serve(request, path, document_root=settings.MEDIA_ROOT)
    # Names are content hashes, so a file never changes.
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    # The file's time would tell which image of a pair was rendered first, and so which
    # model made it (variants render one after the other); a content-addressed file needs none.
    del response["Last-Modified"]
    return response


def healthz(request: HttpRequest) -> HttpResponse:
    """Answer "ok" with no database or session work: for load balancers and the benchmark."""
    return HttpResponse("ok", content_type="text/plain")


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page says: send them to the SVG icon."""
    from django.templatetags.static import static

    return HttpResponsePermanentRedirect(static("favicon.svg"))
