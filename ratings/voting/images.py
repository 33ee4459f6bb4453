"""The images of an impression: per-impression URLs, and the files behind them, padded.

A rater never sees a stored file's name. Each image of an assignment has its own URL, an
opaque token bound to that assignment and to one of its two images (made with the secret
key), so no URL repeats across pairs, across raters, or between an attention check and its
source pair. The view answers only the rater the assignment was served to; anyone else gets
the same 404 as a made-up token. Both images of a pair are sent with the same byte length
(generation.image_files.pad_to), with the same headers, and with no Last-Modified or ETag:
conditional requests are answered as plain ones.
"""

from __future__ import annotations

import uuid

from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils.crypto import constant_time_compare, salted_hmac

from generation.image_files import pad_to, padded_length
from ratings.assignment.state import shown_names
from ratings.models import Assignment, Side

_SALT = "polyphony.ratings.impression-image"
_MAC_LENGTH = 32


def _mac(assignment_id: uuid.UUID, side: str) -> str:
    return salted_hmac(_SALT, f"{assignment_id}:{side}", algorithm="sha256").hexdigest()[
        :_MAC_LENGTH
    ]


def impression_token(assignment_id: uuid.UUID, side: str) -> str:
    """Return the token of the image of `side` ('a' or 'b', in variant terms) of an assignment."""
    return assignment_id.hex + _mac(assignment_id, side)


def impression_url(slug: str, assignment_id: uuid.UUID, side: str) -> str:
    return reverse("ratings:image", args=[slug, impression_token(assignment_id, side)])


def _token_parts(token: str) -> tuple[uuid.UUID, str] | None:
    if len(token) != 32 + _MAC_LENGTH:
        return None
    try:
        return uuid.UUID(hex=token[:32]), token[32:]
    except ValueError:
        return None


def impression_image(*, token: str, user_id: int, slug: str) -> tuple[bytes, str] | None:
    """Return (bytes, content type) of the image a token names, padded to the pair's length.

    None when the token is malformed or forged, or names an assignment of another rater or
    another study: a URL passed between raters shows nothing.
    """
    parts = _token_parts(token)
    if parts is None:
        return None
    assignment_id, mac = parts
    assignment = (
        Assignment.objects.filter(pk=assignment_id, rater__user_id=user_id, pair__study__slug=slug)
        .select_related("pair__image_a", "pair__image_b")
        .first()
    )
    # Both sides' MACs are compared, whichever matches, so the time taken says nothing.
    matches = [constant_time_compare(mac, _mac(assignment_id, side)) for side in Side.values]
    if assignment is None or not any(matches) or assignment.pair.image_a is None:
        return None
    pair = assignment.pair
    names = shown_names(
        (pair.image_a.file.name, pair.image_a.preview.name or ""),
        (pair.image_b.file.name, pair.image_b.preview.name or ""),
    )
    # Both files are read, whichever is asked for: the same work for either image.
    files = []
    for name in names:
        with default_storage.open(name, "rb") as handle:
            files.append(handle.read())
    length = padded_length(files)
    data = files[matches.index(True)]
    content_type = "image/webp" if data[:4] == b"RIFF" else "image/png"
    return pad_to(data, length), content_type
