"""Researchers' API: their studies, the latest scores, the split report and every export.

Session or `Authorization: Token KEY`. A user reads only the studies `studies_for_researcher`
gives them (a StudyGrant, or superuser); any other study is a 404, so a token cannot even
learn which studies exist. Raters and anonymous users get nothing.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.exceptions import NotFound
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response

from ratings.access import studies_for_researcher
from ratings.exports.responses import export_card_response, export_response
from ratings.exports.score_tables import ScoreTables, score_tables, split_report_rows
from ratings.exports.serializers import ScoresSerializer, SplitReportSerializer, StudySerializer
from ratings.exports.tables import CONTENT_TYPES, FORMATS, TABLES, ExportError, export_check
from ratings.models import Study


class FileContentNegotiation(BaseContentNegotiation):
    """Serve a file whatever the client's Accept header asks for.

    The export views answer with the file's own content type; DRF's negotiation would refuse
    `Accept: text/csv` with a 406 before the view runs, since no renderer produces it.
    """

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return (renderers[0], renderers[0].media_type)


class ResearchStudyMixin:
    """Look a study up among those the requesting user may read, else 404."""

    lookup_field = "slug"

    def get_queryset(self) -> QuerySet[Study]:
        return (
            studies_for_researcher(user=self.request.user)
            .prefetch_related("criteria", "cohorts")
            .order_by("name", "slug")
        )

    def study(self) -> Study:
        return get_object_or_404(self.get_queryset(), slug=self.kwargs["slug"])


class StudyListView(ResearchStudyMixin, generics.ListAPIView):
    """The studies whose scores and exports you may read."""

    serializer_class = StudySerializer


class StudyDetailView(ResearchStudyMixin, generics.RetrieveAPIView):
    """One study: its criteria, cohorts, k, and the addresses of its scores and exports."""

    serializer_class = StudySerializer


def _run_and_rows(study: Study) -> tuple[ScoreTables, dict[str, object]]:
    tables = score_tables(study=study)
    return tables, {"study": study.slug, "k": study.min_cohort_size, "run": tables.run}


class StudyScoresView(ResearchStudyMixin, generics.GenericAPIView):
    """The latest stored scores (never recomputed here), with k and complementary suppression."""

    serializer_class = ScoresSerializer

    def get(self, request: Request, slug: str) -> Response:
        tables, head = _run_and_rows(self.study())
        return Response(self.get_serializer({**head, "scores": tables.scores}).data)


class StudySplitsView(ResearchStudyMixin, generics.GenericAPIView):
    """The cohort split report of the latest scores, as JSON."""

    serializer_class = SplitReportSerializer

    def get(self, request: Request, slug: str) -> Response:
        tables, head = _run_and_rows(self.study())
        return Response(self.get_serializer({**head, "rows": split_report_rows(tables)}).data)


_FILE_RESPONSES = {
    (200, CONTENT_TYPES[fmt].split(";")[0]): OpenApiResponse(
        OpenApiTypes.BINARY, description=f"The table as {fmt}, streamed."
    )
    for fmt in FORMATS
}


class StudyExportView(ResearchStudyMixin, generics.GenericAPIView):
    """Download an export: votes_long, votes_wide, scores or splits as csv, jsonl or parquet."""

    content_negotiation_class = FileContentNegotiation

    @extend_schema(
        parameters=[
            OpenApiParameter("table", str, OpenApiParameter.PATH, enum=list(TABLES)),
            OpenApiParameter("fmt", str, OpenApiParameter.PATH, enum=list(FORMATS)),
        ],
        responses={**_FILE_RESPONSES, 404: OpenApiResponse(description="No such export.")},
    )
    def get(self, request: Request, slug: str, table: str, fmt: str) -> StreamingHttpResponse:
        try:
            export_check(table=table, fmt=fmt)
        except ExportError as exc:
            raise NotFound(str(exc)) from exc
        return export_response(study=self.study(), table=table, fmt=fmt)


class StudyExportCardView(ResearchStudyMixin, generics.GenericAPIView):
    """The Markdown dataset card of an export: study, criteria, dates, counts, k, suppression."""

    content_negotiation_class = FileContentNegotiation

    @extend_schema(
        parameters=[OpenApiParameter("table", str, OpenApiParameter.PATH, enum=list(TABLES))],
        responses={(200, "text/markdown"): OpenApiTypes.STR},
    )
    def get(self, request: Request, slug: str, table: str) -> HttpResponse:
        try:
            export_check(table=table, fmt="csv")
        except ExportError as exc:
            raise NotFound(str(exc)) from exc
        return export_card_response(study=self.study(), table=table)
