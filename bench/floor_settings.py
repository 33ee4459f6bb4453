"""The app's settings with bench/floor_urls.py's URLs: bench/votes.py's gunicorn runs on these."""

from webapp.settings import *  # noqa: F403 (the app's settings, whole)

ROOT_URLCONF = "bench.floor_urls"
