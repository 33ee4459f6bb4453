"""Read a long-form vote file from an earlier survey: pure parsing and validation.

`votes_file_parse` reads bytes and returns what the file says, or every bad row by its line;
nothing here touches the database (ratings.exports.imports writes what it returns).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ratings.cohorts import CohortPathError, cohort_path_normalize
from ratings.exports.formats import csv_text_read
from ratings.models import DEFAULT_CRITERIA, Choice, Rater

REQUIRED_COLUMNS = (
    "rater_id",
    "cohort",
    "item_id",
    "variant_a",
    "variant_b",
    "criterion",
    "choice",
)
OPTIONAL_COLUMNS = ("prompt", "category", "created_at")
# The cohort cell may be empty: the export drops labels held by fewer than k raters.
NON_EMPTY_COLUMNS = tuple(name for name in REQUIRED_COLUMNS if name != "cohort")
DEFAULT_CRITERION_KEYS = tuple(key for key, _ in DEFAULT_CRITERIA)
CHOICES = tuple(Choice.values)
COHORT_SEPARATOR = ";"
PANEL_ID_PREFIX = "import"
PANEL_ID_MAX_LENGTH = Rater._meta.get_field("panel_id").max_length
ITEM_ID_MAX_LENGTH = 200
CATEGORY_MAX_LENGTH = 40
VARIANT_NAME = re.compile(r"^[-a-zA-Z0-9_]{1,80}$")
FLAG_VALUES = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class VoteFileError(Exception):
    """A vote file with bad rows; nothing of it may be imported."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        self.errors = sorted(errors, key=lambda error: error.line)
        super().__init__("\n".join(str(error) for error in self.errors))


@dataclass
class VoteDraft:
    """One rater's answers on one item and variant pair, as the file gives them."""

    line: int
    cohort_paths: tuple[str, ...]
    created_at: datetime | None
    # criterion key -> (choice, line)
    answers: dict[str, tuple[str, int]] = field(default_factory=dict)


@dataclass
class ItemDraft:
    """An item (a prompt and seed) of the earlier survey and the variant pairs it was shown as."""

    line: int
    prompt: str = ""
    prompt_line: int = 0
    category: str = ""
    category_line: int = 0
    prompt_cohort: str = ""
    prompt_cohort_line: int = 0
    first_cohort: str = ""
    # (variant_a, variant_b) -> first line
    variant_pairs: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def target_cohort(self) -> str:
        return self.prompt_cohort or self.first_cohort


@dataclass
class RaterDraft:
    line: int
    flagged: bool = False


VoteKey = tuple[str, str, str, str]  # rater_id, item_id, variant_a, variant_b


@dataclass
class VoteFile:
    """What a valid vote file says, grouped into raters, items and votes."""

    raters: dict[str, RaterDraft] = field(default_factory=dict)
    items: dict[str, ItemDraft] = field(default_factory=dict)
    votes: dict[VoteKey, VoteDraft] = field(default_factory=dict)
    rows: int = 0
    checks_skipped: int = 0

    def cohort_paths(self) -> set[str]:
        """Return every cohort label the file uses, on votes or as a prompt's target."""
        paths = {path for vote in self.votes.values() for path in vote.cohort_paths}
        paths.update(item.target_cohort for item in self.items.values())
        return paths

    def variant_names(self) -> set[str]:
        return {name for _, _, a, b in self.votes for name in (a, b)}


def votes_file_parse(
    lines: Iterable[bytes],
    *,
    criteria: Collection[str] = DEFAULT_CRITERION_KEYS,
    max_rater_id_length: int = 64,
) -> VoteFile:
    """Return what a long-form vote file says, or raise VoteFileError naming every bad line.

    `lines` are the file's raw lines (a file opened in binary mode will do), read once, so a
    large file is never held whole. Lines are 1-based and count the header.
    """
    criteria = tuple(criteria)
    errors: list[RowError] = []
    undecodable: dict[int, int] = {}
    reader = csv.reader(_lines_decode(lines, undecodable))
    header: list[str] | None = None
    vote_file = VoteFile()
    last_line = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(reader.line_num, f"not readable as CSV: {exc}"))
            last_line = reader.line_num
            continue
        first_line, last_line = last_line + 1, reader.line_num
        bad_bytes = [n for n in range(first_line, last_line + 1) if n in undecodable]
        for number in bad_bytes:
            errors.append(
                RowError(number, f"undecodable bytes (not UTF-8) at byte {undecodable[number]}")
            )
        if header is None:
            if not record:
                continue
            header, problem = _header_check(record)
            if problem:
                errors.append(RowError(first_line, problem))
                break
            continue
        if bad_bytes or not any(value.strip() for value in record):
            continue
        if len(record) != len(header):
            errors.append(
                RowError(first_line, f"{len(record)} fields, the header has {len(header)}")
            )
            continue
        # A Polyphony export neutralised formula cells with an apostrophe: take it off.
        fields = dict(zip(header, map(csv_text_read, record), strict=True))
        if fields.get("attention_check", "").strip():
            # An attention check's answers test the rater; they are no votes on the survey.
            vote_file.checks_skipped += 1
            continue
        vote_file.rows += 1
        problems = _row_add(vote_file, first_line, fields, criteria, max_rater_id_length)
        errors.extend(RowError(first_line, problem) for problem in problems)
    if header is None and not errors:
        errors.append(RowError(0, "The file is empty: it needs a header and rows."))
    elif not errors and not vote_file.votes and not vote_file.checks_skipped:
        errors.append(RowError(0, "The file holds no votes."))
    errors.extend(_items_check(vote_file) if not errors else ())
    if errors:
        raise VoteFileError(errors)
    return vote_file


def _lines_decode(lines: Iterable[bytes], undecodable: dict[int, int]) -> Iterator[str]:
    # Line by line, so a bad byte is reported on its own line and the rest still parse.
    for number, raw in enumerate(lines, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            undecodable[number] = exc.start
            yield raw.decode("utf-8", errors="replace")


def _header_check(record: list[str]) -> tuple[list[str], str]:
    header = [name.strip().lower() for name in record]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    doubled = sorted({name for name in header if name and header.count(name) > 1})
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if doubled:
        problems.append(f"column(s) given twice: {', '.join(doubled)}")
    if problems:
        expected = ",".join(REQUIRED_COLUMNS) + "[," + ",".join(OPTIONAL_COLUMNS) + "]"
        return header, f"bad header: {'; '.join(problems)} (expected {expected})"
    return header, ""


def _row_add(
    vote_file: VoteFile,
    line: int,
    fields: dict[str, str],
    criteria: tuple[str, ...],
    max_rater_id_length: int,
) -> list[str]:
    """Validate one row and fold it into the file's votes; return what is wrong with it."""
    values = {name: fields.get(name, "").strip() for name in fields}
    problems = [f"empty {name}" for name in NON_EMPTY_COLUMNS if not values[name]]
    rater_id, item_id = values["rater_id"], values["item_id"]
    variant_a, variant_b = values["variant_a"], values["variant_b"]
    if len(rater_id) > max_rater_id_length:
        problems.append(f"rater_id is longer than {max_rater_id_length} characters")
    if len(item_id) > ITEM_ID_MAX_LENGTH:
        problems.append(f"item_id is longer than {ITEM_ID_MAX_LENGTH} characters")
    for name in ("variant_a", "variant_b"):
        if values[name] and not VARIANT_NAME.match(values[name]):
            problems.append(
                f"bad {name} {values[name]!r}: a variant name is letters, digits, '-' or '_', "
                "at most 80 characters"
            )
    if variant_a and variant_a == variant_b:
        problems.append("variant_a and variant_b are the same variant")
    # Keys are matched without regard to case, and stored as the study writes them.
    criterion = next(
        (key for key in criteria if key.lower() == values["criterion"].lower()),
        values["criterion"],
    )
    if criterion and criterion not in criteria:
        problems.append(f"unknown criterion {values['criterion']!r}: use {', '.join(criteria)}")
    choice = values["choice"].lower()
    if choice and choice not in CHOICES:
        problems.append(f"bad choice {values['choice']!r}: use {', '.join(CHOICES)}")
    cohort_paths, cohort_problems = _cohorts_parse(values["cohort"])
    problems += cohort_problems
    prompt_cohort = ""
    if values.get("prompt_cohort"):
        try:
            prompt_cohort = cohort_path_normalize(values["prompt_cohort"])
        except CohortPathError as exc:
            problems.append(f"bad prompt_cohort: {exc}")
    created_at, created_problem = _created_at_parse(values.get("created_at", ""))
    if created_problem:
        problems.append(created_problem)
    category = values.get("category", "").lower()
    if len(category) > CATEGORY_MAX_LENGTH:
        problems.append(f"category is longer than {CATEGORY_MAX_LENGTH} characters")
    flagged = FLAG_VALUES.get(values.get("rater_flagged", "").lower() or "false")
    if flagged is None:
        problems.append(f"bad rater_flagged {values['rater_flagged']!r}: use true or false")
    if problems:
        return problems

    rater = vote_file.raters.setdefault(rater_id, RaterDraft(line))
    rater.flagged = rater.flagged or bool(flagged)
    item = vote_file.items.setdefault(item_id, ItemDraft(line))
    problems += _item_fold(item, line, item_id, values.get("prompt", ""), category, prompt_cohort)
    if not item.first_cohort and cohort_paths:
        item.first_cohort = cohort_paths[0]
    pair = (variant_a, variant_b)
    if pair not in item.variant_pairs:
        reversed_line = item.variant_pairs.get((variant_b, variant_a))
        if reversed_line is not None:
            problems.append(
                f"variant pair {variant_a}/{variant_b} of item {item_id!r} is given the other "
                f"way round, {variant_b}/{variant_a}, on line {reversed_line}"
            )
            return problems
        item.variant_pairs[pair] = line

    labels = tuple(sorted(set(cohort_paths)))
    vote = vote_file.votes.setdefault(
        (rater_id, item_id, variant_a, variant_b), VoteDraft(line, labels, created_at)
    )
    if vote.cohort_paths != labels:
        problems.append(
            f"cohort {';'.join(labels)!r} differs from {';'.join(vote.cohort_paths)!r} on line "
            f"{vote.line}, the same rater's vote on the same item and variant pair"
        )
    earlier = vote.answers.get(criterion)
    if earlier is not None and earlier[0] != choice:
        problems.append(
            f"{criterion} is {choice!r} here and {earlier[0]!r} on line {earlier[1]} for the "
            "same rater, item and variant pair"
        )
    if problems:
        return problems
    if earlier is None:
        vote.answers[criterion] = (choice, line)
    # An earlier survey may time each answer; the vote is as old as its first.
    if created_at is not None and (vote.created_at is None or created_at < vote.created_at):
        vote.created_at = created_at
    return []


def _item_fold(
    item: ItemDraft, line: int, item_id: str, prompt: str, category: str, prompt_cohort: str
) -> list[str]:
    """Record an item's prompt, category and target from a row; say where rows disagree."""
    problems = []
    for name, value in (
        ("prompt", prompt),
        ("category", category),
        ("prompt_cohort", prompt_cohort),
    ):
        if not value:
            continue
        known = getattr(item, name)
        if not known:
            setattr(item, name, value)
            setattr(item, f"{name}_line", line)
        elif known != value:
            problems.append(
                f"{name} differs from line {getattr(item, f'{name}_line')} for item {item_id!r}"
            )
    return problems


def _cohorts_parse(cell: str) -> tuple[list[str], list[str]]:
    """Return the cohort paths of a cell (labels separated by ';'), in order, and problems."""
    paths: list[str] = []
    problems: list[str] = []
    for label in cell.split(COHORT_SEPARATOR):
        if not label.strip():
            continue
        try:
            paths.append(cohort_path_normalize(label))
        except CohortPathError as exc:
            problems.append(f"bad cohort: {exc}")
    return paths, problems


def _created_at_parse(raw: str) -> tuple[datetime | None, str]:
    if not raw:
        return None, ""
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None, (f"bad created_at {raw!r}: use ISO 8601, for example 2024-03-01T12:30:00Z")
    # A time without a zone is taken as UTC, the zone the export writes.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)), ""


def _items_check(vote_file: VoteFile) -> list[RowError]:
    """Say which items have no culture to aim their prompt at."""
    return [
        RowError(
            item.line,
            f"item {item_id!r} has no cohort on any row and no prompt_cohort: its prompt needs "
            "the culture it was aimed at",
        )
        for item_id, item in vote_file.items.items()
        if not item.target_cohort
    ]
