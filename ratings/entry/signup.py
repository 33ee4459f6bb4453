"""Services of sign-up by emailed link: the one mail a sign-up sends, and the link in it.

The sign-up page answers every address alike; only the mail tells its owner whether the
address already has an account. The link is an opaque token; what it stands for (the email and
where to go next) is kept in PostgreSQL until it expires (ratings.SignUpRequest), and no
account is made until the owner chooses a password.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from ratings.entry import selectors, services
from ratings.models import SignUpRequest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignUpLink:
    """What a sign-up link holds: the address it was sent to, and the page to go on to."""

    email: str
    next_url: str = ""


class SignUpLinkRefused(Exception):
    """A sign-up link never sent (or altered), or older than POLYPHONY_SIGNUP_LINK_HOURS.

    `link` is what an expired link held, so the page can offer to send a new one.
    """

    def __init__(self, *, expired: bool, link: SignUpLink | None = None) -> None:
        super().__init__("expired" if expired else "invalid")
        self.expired = expired
        self.link = link


class SignUpMailFailed(Exception):
    """The mail server could not take a sign-up mail."""


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def signup_link_make(*, email: str, next_url: str = "") -> str:
    """Record a sign-up link for the email and the page to go on to; return its token.

    The token is random and opaque: the link names no address. Only its SHA-256 is stored.
    """
    token = secrets.token_urlsafe(32)
    SignUpRequest.objects.create(
        token_digest=_token_digest(token),
        email=email,
        next_url=next_url[:500],
        expires_at=timezone.now() + timedelta(hours=settings.POLYPHONY_SIGNUP_LINK_HOURS),
    )
    return token


def signup_link_read(*, token: str) -> SignUpLink:
    """Return what a sign-up link holds; raise SignUpLinkRefused if unknown or expired."""
    request = SignUpRequest.objects.filter(token_digest=_token_digest(token)).first()
    if request is None:
        raise SignUpLinkRefused(expired=False)
    link = SignUpLink(email=request.email, next_url=request.next_url)
    if request.expires_at <= timezone.now():
        # Genuine but old: what it held is known, to send a new link to the same address.
        raise SignUpLinkRefused(expired=True, link=link)
    return link


def signup_requests_purge(*, now: datetime | None = None) -> int:
    """Delete the sign-up links that have expired; return how many went."""
    deleted, _ = SignUpRequest.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted


def account_mail_allowed(*, email: str, address: str | None) -> bool:
    """Count one more account mail (sign-up or password reset) from the client address to the
    email address; tell whether it is within the hourly limits. A refusal is logged.
    """
    per_address = settings.POLYPHONY_SIGNUP_MAILS_PER_ADDRESS_PER_HOUR
    per_email = settings.POLYPHONY_SIGNUP_MAILS_PER_EMAIL_PER_HOUR
    if per_address and (
        services.entry_window_count(
            f"signup-address:{services.entry_key_digest(str(address))}", 3600
        )
        > per_address
    ):
        logger.warning(
            "Account mail not sent: over %d this hour from one client address", per_address
        )
        return False
    if per_email and (
        services.entry_window_count(
            f"signup-email:{services.entry_key_digest(email.lower())}", 3600
        )
        > per_email
    ):
        logger.warning("Account mail not sent: over %d this hour to one email address", per_email)
        return False
    return True


def signup_mail_send(*, email: str, next_url: str, site_url: str, address: str | None) -> bool:
    """Send the one mail a sign-up asks for; return whether one was sent.

    A new address gets a link to finish signing up; an address with an account gets a note
    saying so, with links to sign in and to reset the password. Both ways look the address up
    once, record one link, render one mail and send it, so neither the page nor its time tells
    which. Past a limit per client address or per email address nothing is sent.
    """
    if not account_mail_allowed(email=email, address=address):
        return False
    known = selectors.email_has_account(email=email)
    token = signup_link_make(email=email, next_url=next_url)
    query = f"?{urlencode({'next': next_url})}" if next_url else ""
    context = {
        "email": email,
        "hours": settings.POLYPHONY_SIGNUP_LINK_HOURS,
        "finish_url": site_url + reverse("signup_finish", args=[token]),
        "login_url": site_url + reverse("login") + query,
        "reset_url": site_url + reverse("password_reset"),
    }
    kind = "signup_known" if known else "signup_link"
    subject = render_to_string(f"registration/{kind}_subject.txt", context)
    body = render_to_string(f"registration/{kind}_email.txt", context)
    try:
        send_mail(" ".join(subject.split()), body, None, [email])
    except (smtplib.SMTPException, OSError) as failure:
        # The type only: a refusal's text may name the address.
        failed = type(failure).__name__
        logger.error("Sign-up mail not sent: the mail server refused it (%s)", failed)
        raise SignUpMailFailed(failed) from failure
    return True
