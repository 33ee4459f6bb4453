"""Parse and validate prompt batch files (CSV or JSONL), every bad row named by its line.

Pure code: the caller passes the cohorts it knows, so this needs no database.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ratings.cohorts import CohortPathError, cohort_path_normalize

REQUIRED_COLUMNS = ("prompt", "cohort", "category")
OPTIONAL_COLUMNS = ("seeds",)
MAX_SEED = 2**32 - 1
CATEGORY_PATTERN = re.compile(r"^[a-z][a-z0-9_ -]{0,39}$")


@dataclass(frozen=True)
class PromptRow:
    line: int
    text: str
    cohort_path: str
    category: str
    seeds: tuple[int, ...] | None
    # The prompt in rater languages, (code, text), from columns or keys `prompt_<code>`; the
    # images are rendered from `text` only.
    translations: tuple[tuple[str, str], ...] = field(default=())


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class BatchFileError(Exception):
    """A batch file with bad rows; nothing of it may be queued."""

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(error) for error in errors))


def prompt_rows_parse(
    data: bytes,
    *,
    filename: str,
    known_cohorts: Iterable[str],
    token_count: Callable[[str], int] | None = None,
    max_tokens: int = 77,
    languages: Iterable[str] = (),
) -> list[PromptRow]:
    """Return the rows of a CSV or JSONL batch file, or raise BatchFileError naming every bad line.

    `token_count`, when given, counts a prompt's tokens including the start and end tokens, so
    that a prompt the text encoder would silently truncate is refused. `languages` are the codes
    whose translations a row may carry as `prompt_<code>` (for example `prompt_es`).
    """
    known = set(known_cohorts)
    optional = OPTIONAL_COLUMNS + tuple(f"prompt_{code}" for code in languages)
    is_jsonl = filename.lower().endswith((".jsonl", ".ndjson"))
    raw_rows, errors = (_jsonl_rows if is_jsonl else _csv_rows)(data, optional)
    rows: list[PromptRow] = []
    seen: dict[tuple[str, str], int] = {}
    for line, fields in raw_rows:
        row, row_errors = _row_validate(line, fields, known, token_count, max_tokens)
        if row is not None:
            key = (row.text.casefold(), row.cohort_path)
            if key in seen:
                row_errors.append(f"duplicate of line {seen[key]}")
            else:
                seen[key] = line
        errors.extend(RowError(line, message) for message in row_errors)
        if row is not None and not row_errors:
            rows.append(row)
    if not rows and not errors:
        errors.append(RowError(0, "The file holds no prompts."))
    if errors:
        raise BatchFileError(sorted(errors, key=lambda error: error.line))
    return rows


def _lines_decode(data: bytes) -> tuple[list[tuple[int, str]], list[RowError]]:
    lines: list[tuple[int, str]] = []
    errors: list[RowError] = []
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            lines.append((number, raw.decode("utf-8")))
        except UnicodeDecodeError as exc:
            errors.append(RowError(number, f"undecodable bytes (not UTF-8) at byte {exc.start}"))
    return lines, errors


def _csv_rows(
    data: bytes, optional: tuple[str, ...]
) -> tuple[list[tuple[int, dict]], list[RowError]]:
    lines, errors = _lines_decode(data)
    if not lines:
        return [], errors
    header_line, header_text = lines[0]
    header = [name.strip().lower() for name in next(csv.reader([header_text]), [])]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    unknown = [name for name in header if name not in REQUIRED_COLUMNS + optional]
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown column(s) {', '.join(unknown)}")
        expected = ",".join(REQUIRED_COLUMNS) + "".join(f"[,{name}]" for name in optional)
        errors.append(
            RowError(header_line, f"bad header: {'; '.join(problems)} (expected {expected})")
        )
        return [], errors
    rows: list[tuple[int, dict]] = []
    for number, text in lines[1:]:
        if not text.strip():
            continue
        values = next(csv.reader(io.StringIO(text)), [])
        if len(values) > len(header):
            errors.append(RowError(number, f"{len(values)} fields, the header has {len(header)}"))
            continue
        rows.append((number, dict(zip(header, values, strict=False))))
    return rows, errors


def _jsonl_rows(
    data: bytes, optional: tuple[str, ...]
) -> tuple[list[tuple[int, dict]], list[RowError]]:
    lines, errors = _lines_decode(data)
    rows: list[tuple[int, dict]] = []
    for number, text in lines:
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            errors.append(RowError(number, f"not valid JSON: {exc.msg}"))
            continue
        if not isinstance(value, dict):
            errors.append(RowError(number, "each line must be a JSON object"))
            continue
        unknown = sorted(set(value) - set(REQUIRED_COLUMNS + optional))
        if unknown:
            errors.append(RowError(number, f"unknown key(s) {', '.join(unknown)}"))
            continue
        rows.append((number, value))
    return rows, errors


def _row_validate(
    line: int,
    fields: dict,
    known: set[str],
    token_count: Callable[[str], int] | None,
    max_tokens: int,
) -> tuple[PromptRow | None, list[str]]:
    problems: list[str] = []
    text = " ".join(str(fields.get("prompt") or "").split())
    if not text:
        problems.append("empty prompt")
    elif token_count is not None and (count := token_count(text)) > max_tokens:
        problems.append(
            f"prompt is {count} tokens long; the text encoder reads at most {max_tokens} "
            "and would silently cut the rest"
        )
    cohort_raw = str(fields.get("cohort") or "")
    cohort_path = ""
    try:
        cohort_path = cohort_path_normalize(cohort_raw)
        if cohort_path not in known:
            problems.append(f"unknown cohort {cohort_raw!r}")
    except CohortPathError as exc:
        problems.append(str(exc))
    category = str(fields.get("category") or "").strip().lower()
    if category and not CATEGORY_PATTERN.match(category):
        problems.append(f"bad category {category!r}: use lower-case words, at most 40 characters")
    seeds, seed_problem = _seeds_parse(fields.get("seeds"))
    if seed_problem:
        problems.append(seed_problem)
    translations = []
    for name, value in fields.items():
        if name.startswith("prompt_") and value is not None:
            if not isinstance(value, str):
                problems.append(f"{name} must be text")
            elif translated := " ".join(value.split()):
                translations.append((name.removeprefix("prompt_"), translated))
    if problems:
        return None, problems
    return PromptRow(line, text, cohort_path, category, seeds, tuple(sorted(translations))), []


def _seeds_parse(raw: object) -> tuple[tuple[int, ...] | None, str | None]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, None
    if isinstance(raw, list):
        items = raw
    elif isinstance(raw, int) and not isinstance(raw, bool):
        items = [raw]
    else:
        items = [item for item in re.split(r"[\s;|]+", str(raw).strip()) if item]
    seeds: list[int] = []
    for item in items:
        try:
            if isinstance(item, (bool, float)):
                raise ValueError
            seed = int(item)
        except (TypeError, ValueError):
            return None, f"bad seed {item!r}: seeds are whole numbers from 0 to {MAX_SEED}"
        if not 0 <= seed <= MAX_SEED:
            return None, f"bad seed {seed}: seeds are whole numbers from 0 to {MAX_SEED}"
        seeds.append(seed)
    if len(set(seeds)) != len(seeds):
        return None, "the same seed is given twice"
    return tuple(seeds), None
