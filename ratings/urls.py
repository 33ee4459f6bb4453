from __future__ import annotations

from django.urls import path

from ratings.views import dashboard, entry, rating, research

app_name = "ratings"

urlpatterns = [
    path("", entry.home, name="home"),
    path("s/<slug:slug>/", entry.study_start, name="start"),
    path("s/<slug:slug>/consent/", entry.consent, name="consent"),
    path("s/<slug:slug>/cohorts/", entry.cohorts, name="cohorts"),
    path("s/<slug:slug>/rate/", rating.rate, name="rate"),
    path("s/<slug:slug>/vote/", rating.vote, name="vote"),
    path(
        "studies/<slug:slug>/export/votes.csv", research.export_votes_csv, name="export_votes_csv"
    ),
]

# Rating in the browser: skipping a pair, and the researchers' rater overview.
urlpatterns += [
    path("s/<slug:slug>/skip/", rating.skip, name="skip"),
    path("studies/<slug:slug>/raters/", research.rater_overview, name="rater_overview"),
]

# Entry: invite links, the optional questions, completion and stopping.
urlpatterns += [
    path("i/<str:token>/", entry.invite, name="invite"),
    path("s/<slug:slug>/about-you/", entry.demographics, name="demographics"),
    path("s/<slug:slug>/done/", entry.complete, name="complete"),
    path("s/<slug:slug>/stop/", entry.stop, name="stop"),
]

# The researchers' dashboard: the studies one may read, a study's scores, recomputing them.
urlpatterns += [
    path("studies/", dashboard.study_list, name="study_list"),
    path("studies/<slug:slug>/", dashboard.dashboard, name="dashboard"),
    path(
        "studies/<slug:slug>/recompute/", dashboard.dashboard_recompute, name="dashboard_recompute"
    ),
]
