"""Entry pages, in the `ratings` namespace (ratings/urls.py); sign-up is at accounts/signup/."""

from __future__ import annotations

from django.urls import path

from ratings.entry import views

urlpatterns = [
    path("", views.home, name="home"),
    path("s/<slug:slug>/", views.study_start, name="start"),
    path("s/<slug:slug>/consent/", views.consent, name="consent"),
    path("s/<slug:slug>/panel/", views.panel_switch, name="panel_switch"),
    path("s/<slug:slug>/cohorts/", views.cohorts, name="cohorts"),
    # Invite links, the optional questions, completion and stopping.
    path("i/<str:token>/", views.invite, name="invite"),
    path("s/<slug:slug>/about-you/", views.demographics, name="demographics"),
    path("s/<slug:slug>/done/", views.complete, name="complete"),
    path("s/<slug:slug>/stop/", views.stop, name="stop"),
]
