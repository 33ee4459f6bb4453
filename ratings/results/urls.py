"""The researchers' dashboard, in the `ratings` namespace (ratings/urls.py)."""

from __future__ import annotations

from django.urls import path

from ratings.results import views

# The studies one may read, a study's scores, recomputing them.
urlpatterns = [
    path("studies/", views.study_list, name="study_list"),
    path("studies/<slug:slug>/", views.dashboard, name="dashboard"),
    path("studies/<slug:slug>/recompute/", views.dashboard_recompute, name="dashboard_recompute"),
    path("studies/<slug:slug>/factions/<int:score_id>/", views.factions, name="factions"),
]
