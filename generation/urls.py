"""Staff pages under /batches/ and the staff API under /api/v1/ (see webapp/urls.py)."""

from __future__ import annotations

from django.urls import path

from generation import api, views

app_name = "generation"

urlpatterns = [
    path("batches/queue/", views.batch_queue, name="batch_queue"),
    path("batches/queue/<slug:token>/", views.batch_queue_preview, name="batch_queue_preview"),
    path("batches/<int:pk>/", views.batch_progress, name="batch_progress"),
    path("batches/<int:pk>/cancel/", views.batch_cancel, name="batch_cancel"),
    path("batches/<int:pk>/retry-failed/", views.batch_retry_failed, name="batch_retry_failed"),
    path("api/v1/batches/", api.BatchListView.as_view(), name="api_batch_list"),
    path("api/v1/batches/<int:pk>/", api.BatchDetailView.as_view(), name="api_batch_detail"),
]
