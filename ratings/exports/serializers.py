"""Shapes of the researchers' API (ratings/api.py), also what its OpenAPI schema describes."""

from __future__ import annotations

from collections.abc import Sequence

from django.urls import reverse
from rest_framework import serializers

from ratings.exports.formats import Column
from ratings.exports.score_tables import SCORE_COLUMNS, SPLIT_COLUMNS
from ratings.exports.tables import FORMATS, TABLES
from ratings.models import Criterion, ScoreRun, Study

_FIELDS = {
    "text": lambda: serializers.CharField(allow_null=True, allow_blank=True),
    "int": lambda: serializers.IntegerField(allow_null=True),
    "float": lambda: serializers.FloatField(allow_null=True),
    "bool": lambda: serializers.BooleanField(allow_null=True),
    "timestamp": lambda: serializers.DateTimeField(allow_null=True),
}


def _columns_serializer(name: str, columns: Sequence[Column], doc: str) -> type:
    """Build a read-only serializer with one field per export column, its meaning as help."""
    fields = {}
    for column in columns:
        field = _FIELDS[column.kind]()
        field.help_text = column.meaning
        fields[column.name] = field
    return type(name, (serializers.Serializer,), {**fields, "__doc__": doc})


ScoreRowSerializer = _columns_serializer(
    "ScoreRowSerializer",
    SCORE_COLUMNS,
    "One cohort x criterion x variant pair row of the latest scores; numbers are null where "
    "the row is suppressed.",
)
SplitRowSerializer = _columns_serializer(
    "SplitRowSerializer",
    SPLIT_COLUMNS,
    "One row of the cohort split report: a criterion's distribution, or a coherence row.",
)


class CriterionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Criterion
        fields = ["key", "question", "position"]


class ScoreRunSerializer(serializers.ModelSerializer):
    """When the scores were computed, over which votes, with which resampling settings."""

    class Meta:
        model = ScoreRun
        fields = [
            "id",
            "computed_at",
            "votes_covered",
            "last_vote_id",
            "include_flagged",
            "permutations",
            "bootstrap",
            "seed",
        ]


class StudySerializer(serializers.ModelSerializer):
    """A study a researcher may read, with the addresses of its scores and exports."""

    k = serializers.IntegerField(source="min_cohort_size")
    criteria = CriterionSerializer(many=True)
    cohorts = serializers.SlugRelatedField(slug_field="path", many=True, read_only=True)
    scores = serializers.SerializerMethodField()
    splits = serializers.SerializerMethodField()
    exports = serializers.SerializerMethodField()
    cards = serializers.SerializerMethodField()

    class Meta:
        model = Study
        fields = [
            "slug",
            "name",
            "description",
            "k",
            "criteria",
            "cohorts",
            "scores",
            "splits",
            "exports",
            "cards",
        ]

    def _url(self, name: str, *args: str) -> str:
        path = reverse(f"ratings_api:{name}", args=args)
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_scores(self, study: Study) -> str:
        return self._url("study_scores", study.slug)

    def get_splits(self, study: Study) -> str:
        return self._url("study_splits", study.slug)

    def get_exports(self, study: Study) -> dict[str, dict[str, str]]:
        """Map table -> format -> download address."""
        return {
            table: {fmt: self._url("study_export", study.slug, table, fmt) for fmt in FORMATS}
            for table in TABLES
        }

    def get_cards(self, study: Study) -> dict[str, str]:
        """Map table -> address of its Markdown dataset card."""
        return {table: self._url("study_export_card", study.slug, table) for table in TABLES}


class ScoresSerializer(serializers.Serializer):
    """The latest scores of a study, with k applied (suppressed rows carry no numbers)."""

    study = serializers.CharField()
    k = serializers.IntegerField()
    run = ScoreRunSerializer(allow_null=True)
    scores = ScoreRowSerializer(many=True)


class SplitReportSerializer(serializers.Serializer):
    """The cohort split report: per cohort and criterion, and the coherence rows."""

    study = serializers.CharField()
    k = serializers.IntegerField()
    run = ScoreRunSerializer(allow_null=True)
    rows = SplitRowSerializer(many=True)
