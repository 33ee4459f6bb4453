"""The HTTP responses of an export and its card, shared by the pages and the API."""

from __future__ import annotations

from django.http import HttpResponse, StreamingHttpResponse

from ratings.exports.cards import dataset_card
from ratings.exports.tables import CONTENT_TYPES, export_check, export_filename, export_stream
from ratings.models import Study


def export_response(*, study: Study, table: str, fmt: str) -> StreamingHttpResponse:
    """Stream one export as a download; raises ExportError for an unknown table or format."""
    export_check(table=table, fmt=fmt)
    response = StreamingHttpResponse(
        export_stream(study=study, table=table, fmt=fmt), content_type=CONTENT_TYPES[fmt]
    )
    filename = export_filename(study=study, table=table, fmt=fmt)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def export_card_response(*, study: Study, table: str) -> HttpResponse:
    """Return an export's dataset card as a Markdown download."""
    response = HttpResponse(
        dataset_card(study=study, table=table), content_type="text/markdown; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-{table}.md"'
    return response
