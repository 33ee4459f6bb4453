"""Researchers' pages and downloads, in the `ratings` namespace.

`urlpatterns` (the rater overview and the first votes download) join ratings/urls.py.
`download_urlpatterns` are the downloads of every table: `ratings:export` takes [slug, table,
fmt] and `ratings:export_card` takes [slug, table]; webapp/urls.py merges them into the
namespace, and the dashboard links them only where they resolve. The token-authenticated API
under /api/v1/ serves the same files (ratings/exports/api_urls.py).
"""

from __future__ import annotations

from django.urls import path

from ratings.exports import views

urlpatterns = [
    path("studies/<slug:slug>/export/votes.csv", views.export_votes_csv, name="export_votes_csv"),
    path("studies/<slug:slug>/raters/", views.rater_overview, name="rater_overview"),
]

download_urlpatterns = [
    path(
        "studies/<slug:slug>/exports/<slug:table>.<slug:fmt>",
        views.export_download,
        name="export",
    ),
    path("studies/<slug:slug>/exports/<slug:table>/card.md", views.export_card, name="export_card"),
]
