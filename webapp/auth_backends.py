"""The lockout backend: django-axes on every login form, nothing where no request is."""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend


class LockoutBackend(AxesStandaloneBackend):
    """django-axes' check, for authenticate() calls that carry a request.

    Every login form (the site's and the admin's) passes the request, so every one is
    guarded; a call without one (a management command, the test client's login) has no
    address to lock and is left to the model backend.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
