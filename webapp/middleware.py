"""Middleware of the front door: bodies refused by size before they are read, and a database
outage answered with 503 and Retry-After (rate.js retries those) rather than a 500 page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "") or request.path.startswith(
        "/api/"
    )


def _refusal(request: HttpRequest, status: int, message: str) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"error": message, "detail": message}, status=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


class BodySizeLimitMiddleware:
    """Refuse a request whose declared body exceeds POLYPHONY_MAX_REQUEST_BYTES with 413.

    It runs before the sessions and CSRF middleware, which would read the body (a multipart
    upload is spooled to disk whole, whatever DATA_UPLOAD_MAX_MEMORY_SIZE says). A body
    without Content-Length (chunked) is refused too: the WSGI server cannot bound it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.POLYPHONY_MAX_REQUEST_BYTES
        declared = request.META.get("CONTENT_LENGTH") or ""
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        try:
            length = int(declared) if declared else 0
        except ValueError:
            return _refusal(request, 400, "Bad Content-Length.")
        if length > limit or (chunked and not declared):
            return _refusal(
                request,
                413,
                f"The request body is larger than this server accepts ({limit} bytes).",
            )
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """Answer a request that the database could not serve with 503 and Retry-After.

    A vote that failed this way was not stored (its statement is atomic), so resending it is
    safe; a resend of one that was stored is answered with the next pair.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            return self.get_response(request)
        except (OperationalError, InterfaceError) as exc:  # raised before the view ran
            return self._unavailable(request, exc)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, (OperationalError, InterfaceError)):
            return self._unavailable(request, exception)
        return None

    def _unavailable(self, request: HttpRequest, exc: Exception) -> HttpResponse:
        logger.warning("Database unavailable for %s %s: %s", request.method, request.path, exc)
        response = _refusal(
            request, 503, "The service is briefly unavailable; try again in a few seconds."
        )
        response["Retry-After"] = str(settings.POLYPHONY_RETRY_AFTER_SECONDS)
        response["Cache-Control"] = "no-store"
        return response
