"""Researchers' download links, in the `ratings` namespace (webapp/urls.py merges them in).

`ratings:export` takes [slug, table, fmt] and `ratings:export_card` takes [slug, table]; the
token-authenticated API under /api/v1/ serves the same files (ratings/api_urls.py).
"""

from __future__ import annotations

from django.urls import path

from ratings.views import research

urlpatterns = [
    path(
        "studies/<slug:slug>/exports/<slug:table>.<slug:fmt>",
        research.export_download,
        name="export",
    ),
    path(
        "studies/<slug:slug>/exports/<slug:table>/card.md", research.export_card, name="export_card"
    ),
]
