"""Forms of the staff pages: queueing a prompt batch from an uploaded file or pasted rows."""

from __future__ import annotations

import csv
import dataclasses
from typing import Any

from django import forms
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.defaultfilters import pluralize

from generation import selectors, services
from generation.batch_files import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, BatchFileError, RowError
from generation.models import ModelVariant
from generation.tokens import TokenizerUnavailable
from ratings.models import Study

MAX_SEEDS_PER_PROMPT = 64
MAX_INPUT_BYTES = 5 * 1024 * 1024
PASTED_HEADER = ",".join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)


class VariantChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: ModelVariant) -> str:
        return f"{obj.name} ({obj.get_role_display()})"


class BatchQueueForm(forms.Form):
    """Choose a study, its variants and seeds, and give the prompts as a file or pasted rows.

    A valid form holds the parsed rows in cleaned_data["rows"]; a form whose rows are bad lists
    every one of them in `row_errors`.
    """

    study = forms.ModelChoiceField(queryset=Study.objects.order_by("name"), empty_label=None)
    variants = VariantChoiceField(
        queryset=ModelVariant.objects.order_by("role", "name"),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose a base and a fine-tuned variant."},
        help_text="At least a base and a fine-tuned variant: pairs compare them.",
    )
    seeds_per_prompt = forms.IntegerField(
        min_value=1,
        max_value=MAX_SEEDS_PER_PROMPT,
        initial=4,
        help_text="For rows that give no seeds of their own.",
    )
    prompts_file = forms.FileField(
        required=False,
        label="Upload a file",
        help_text="CSV with the columns prompt,cohort,category[,seeds], or JSONL with those keys.",
    )
    pasted_rows = forms.CharField(
        required=False,
        strip=False,
        label="or paste rows",
        widget=forms.Textarea(
            attrs={
                "rows": 8,
                "spellcheck": "false",
                "placeholder": f"{PASTED_HEADER}\n"
                "a plate of idli and sambar,india:tamil,food\n"
                "a hanok with a tiled roof,korea,architecture,11;12;13",
            }
        ),
        help_text="The same format as the file; the header line may be left out.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.row_errors: list[RowError] = []
        self.input_lines: list[str] = []

    def clean_prompts_file(self) -> Any:
        upload = self.cleaned_data.get("prompts_file")
        if upload is not None and upload.size > MAX_INPUT_BYTES:
            raise forms.ValidationError("The file is larger than 5 MB; split it into batches.")
        return upload

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        variants = list(cleaned.get("variants") or [])
        if variants:
            for problem in services.batch_problems(
                variants=variants, seeds_per_prompt=cleaned.get("seeds_per_prompt") or 1
            ):
                self.add_error("variants", problem)
        upload = cleaned.get("prompts_file")
        pasted = cleaned.get("pasted_rows") or ""
        if upload is not None and pasted.strip():
            raise forms.ValidationError("Upload a file or paste rows, not both.")
        if upload is None and not pasted.strip():
            if not self.has_error("prompts_file"):
                raise forms.ValidationError("Upload a file of prompts or paste rows.")
            return cleaned
        if upload is not None:
            data, filename, shift = upload.read(), upload.name, 0
            text = data.decode("utf-8", errors="replace")
        else:
            data, filename, shift = _pasted_input(pasted)
            text = pasted
        self.input_lines = text.splitlines()
        try:
            rows = selectors.batch_rows_parse(data=data, filename=filename, variants=variants)
        except TokenizerUnavailable as exc:
            self.add_error("variants", str(exc))
            return cleaned
        except BatchFileError as exc:
            self.row_errors = [
                dataclasses.replace(error, line=error.line + shift) if error.line else error
                for error in exc.errors
            ]
            bad = len({error.line for error in self.row_errors})
            raise forms.ValidationError(
                f"{bad} line{pluralize(bad)} of the input {pluralize(bad, 'has,have')} "
                "problems; nothing was queued."
            ) from exc
        cleaned["rows"] = [dataclasses.replace(row, line=row.line + shift) for row in rows]
        cleaned["source_name"] = filename if upload is not None else "pasted rows"
        # What the preview carries to the confirm step, to be checked again there. Only valid
        # input gets here, so an uploaded file is UTF-8 text.
        cleaned["carried"] = {
            "study": cleaned["study"].pk if cleaned.get("study") else None,
            "variants": [variant.pk for variant in variants],
            "seeds_per_prompt": cleaned.get("seeds_per_prompt"),
            "filename": filename if upload is not None else "",
            "text": text,
        }
        return cleaned

    def bad_rows(self) -> list[tuple[int, str, list[str]]]:
        """Return (line, the line's text, its problems) for every bad line, in line order."""
        problems: dict[int, list[str]] = {}
        for error in self.row_errors:
            problems.setdefault(error.line, []).append(error.message)
        return [
            (
                line,
                self.input_lines[line - 1] if 0 < line <= len(self.input_lines) else "",
                messages,
            )
            for line, messages in sorted(problems.items())
        ]

    @classmethod
    def from_carried(cls, carried: dict[str, Any]) -> BatchQueueForm:
        """Return the form bound to input carried from a preview, to be validated again."""
        data = {
            "study": carried["study"],
            "variants": carried["variants"],
            "seeds_per_prompt": carried["seeds_per_prompt"],
        }
        files = {}
        if carried["filename"]:
            files["prompts_file"] = SimpleUploadedFile(
                carried["filename"], carried["text"].encode("utf-8")
            )
        else:
            data["pasted_rows"] = carried["text"]
        return cls(data, files)


def _pasted_input(text: str) -> tuple[bytes, str, int]:
    """Return pasted rows as file bytes, a file name that tells their format, and the shift
    that turns a line number of those bytes into one of the pasted text.

    Leading blank lines are dropped and a missing CSV header is added, so that the rows parse
    as a file would while every problem is still reported by its line in the pasted text.
    """
    lines = text.splitlines()
    blank = next((n for n, line in enumerate(lines) if line.strip()), len(lines))
    body = "\n".join(lines[blank:])
    first = lines[blank] if blank < len(lines) else ""
    if first.lstrip().startswith("{"):
        return body.encode(), "pasted.jsonl", blank
    header = [name.strip().lower() for name in next(csv.reader([first]), [])]
    if "prompt" in header and set(header) <= set(REQUIRED_COLUMNS + OPTIONAL_COLUMNS):
        return body.encode(), "pasted.csv", blank
    return f"{PASTED_HEADER}\n{body}".encode(), "pasted.csv", blank - 1
