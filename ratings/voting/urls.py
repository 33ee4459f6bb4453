"""The rating page, the vote and the skip, in the `ratings` namespace (ratings/urls.py)."""

from __future__ import annotations

from django.urls import path

from ratings.voting import views

urlpatterns = [
    path("s/<slug:slug>/rate/", views.rate, name="rate"),
    path("s/<slug:slug>/vote/", views.vote, name="vote"),
    path("s/<slug:slug>/skip/", views.skip, name="skip"),
    path("s/<slug:slug>/image/<str:token>", views.image, name="image"),
]
