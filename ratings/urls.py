"""The ratings pages, namespace `ratings`: each package's URLs, gathered here.

The downloads of every export table (ratings.exports.urls.download_urlpatterns) join the
namespace in webapp/urls.py.
"""

from __future__ import annotations

from ratings.entry import urls as entry_urls
from ratings.exports import urls as exports_urls
from ratings.results import urls as results_urls
from ratings.voting import urls as voting_urls

app_name = "ratings"

urlpatterns = [
    *entry_urls.urlpatterns,
    *voting_urls.urlpatterns,
    *results_urls.urlpatterns,
    *exports_urls.urlpatterns,
]
