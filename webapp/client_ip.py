"""The client's address: the peer's, or the one the trusted proxies put in X-Forwarded-For."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """Return the client's address; behind POLYPHONY_PROXY_COUNT proxies, from the right.

    Each proxy appends the address it was reached from, so the client's is the one the
    outermost trusted proxy appended; anything left of it the client may have forged.
    """
    count = settings.POLYPHONY_PROXY_COUNT
    if count:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        hops = [hop for hop in hops if hop]
        if len(hops) >= count:
            return hops[-count]
    return request.META.get("REMOTE_ADDR") or None
