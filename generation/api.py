"""Staff API: the progress of prompt batches, as the progress page shows it."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import BasePermission, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from generation import selectors
from generation.models import PromptBatch
from generation.selectors import BatchProgress


class CanViewBatches(BasePermission):
    """Staff who may view prompt batches in the admin may read their progress here."""

    def has_permission(self, request: Request, view: object) -> bool:
        return request.user.has_perm("generation.view_promptbatch")


class BatchProgressSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="batch_id")
    page = serializers.SerializerMethodField()
    study = serializers.CharField(source="study_slug")
    study_name = serializers.CharField()
    status = serializers.CharField()
    status_label = serializers.CharField()
    counts = serializers.DictField(child=serializers.IntegerField())
    total = serializers.IntegerField()
    open = serializers.IntegerField()
    finished_share = serializers.FloatField()
    prompts = serializers.IntegerField()
    variants = serializers.ListField(child=serializers.CharField())
    seeds_per_prompt = serializers.IntegerField()
    source_name = serializers.CharField()
    queued_by = serializers.CharField()
    images_per_minute = serializers.FloatField(allow_null=True)
    eta_seconds = serializers.IntegerField(allow_null=True)
    images_ahead = serializers.IntegerField(
        help_text="Images of earlier open batches still queued or running: the place in the queue."
    )
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    can_cancel = serializers.BooleanField()
    can_retry = serializers.BooleanField()

    def get_page(self, progress: BatchProgress) -> str:
        path = reverse("generation:batch_progress", args=[progress.batch_id])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class BatchPagination(LimitOffsetPagination):
    default_limit = 20
    max_limit = 100


class BatchListView(generics.GenericAPIView):
    """Recent batches, newest first; `?study=SLUG` and `?status=running` narrow the list."""

    permission_classes = [IsAdminUser, CanViewBatches]
    serializer_class = BatchProgressSerializer
    pagination_class = BatchPagination

    def get_queryset(self):
        return selectors.batches_recent(
            study_slug=self.request.query_params.get("study", ""),
            status=self.request.query_params.get("status", ""),
        )

    @extend_schema(
        operation_id="batches_list",
        parameters=[
            OpenApiParameter("study", str, description="Only this study's batches (slug)."),
            OpenApiParameter("status", str, description="Only batches in this status."),
        ],
        responses=BatchProgressSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        batches = self.paginate_queryset(self.get_queryset())
        progress = [selectors.batch_progress(batch=batch) for batch in batches]
        return self.get_paginated_response(self.get_serializer(progress, many=True).data)


class BatchDetailView(generics.GenericAPIView):
    """One batch's progress: image counts by status, pace, ETA, status."""

    permission_classes = [IsAdminUser, CanViewBatches]
    serializer_class = BatchProgressSerializer

    @extend_schema(operation_id="batches_retrieve")
    def get(self, request: Request, pk: int) -> Response:
        batch = get_object_or_404(PromptBatch.objects.select_related("study", "queued_by"), pk=pk)
        return Response(self.get_serializer(selectors.batch_progress(batch=batch)).data)
