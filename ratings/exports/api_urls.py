"""The researchers' API under /api/v1/ (webapp/urls.py), namespace `ratings_api`."""

from __future__ import annotations

from django.urls import path

from ratings.exports import api

app_name = "ratings_api"

urlpatterns = [
    path("studies/", api.StudyListView.as_view(), name="study_list"),
    path("studies/<slug:slug>/", api.StudyDetailView.as_view(), name="study_detail"),
    path("studies/<slug:slug>/scores/", api.StudyScoresView.as_view(), name="study_scores"),
    path("studies/<slug:slug>/splits/", api.StudySplitsView.as_view(), name="study_splits"),
    path(
        "studies/<slug:slug>/exports/<slug:table>.<slug:fmt>",
        api.StudyExportView.as_view(),
        name="study_export",
    ),
    path(
        "studies/<slug:slug>/exports/<slug:table>/card.md",
        api.StudyExportCardView.as_view(),
        name="study_export_card",
    ),
]
