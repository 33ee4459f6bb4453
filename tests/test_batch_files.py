"""Batch files are validated whole; every bad row is named by its line."""

from __future__ import annotations

import pytest

from generation.batch_files import BatchFileError, prompt_rows_parse

KNOWN = {"india", "india:tamil", "korea"}
HEADER = "prompt,cohort,category,seeds\n"


def _errors(text: str | bytes, filename: str = "batch.csv") -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    with pytest.raises(BatchFileError) as caught:
        prompt_rows_parse(data, filename=filename, known_cohorts=KNOWN)
    return [str(error) for error in caught.value.errors]


def test_good_csv_gives_rows_with_lines_and_seeds():
    rows = prompt_rows_parse(
        (HEADER + "a bowl of rice,india,food,1 2\na hanok,korea,architecture,\n").encode(),
        filename="b.csv",
        known_cohorts=KNOWN,
    )
    assert [(r.line, r.text, r.cohort_path, r.seeds) for r in rows] == [
        (2, "a bowl of rice", "india", (1, 2)),
        (3, "a hanok", "korea", None),
    ]


def test_empty_prompt_names_its_line():
    assert _errors(HEADER + "a hanok,korea,architecture,\n ,india,food,\n") == [
        "line 3: empty prompt"
    ]


def test_unknown_cohort_names_its_line():
    assert _errors(HEADER + "tacos,mexico,food,\n") == ["line 2: unknown cohort 'mexico'"]


def test_undecodable_bytes_name_their_line():
    errors = _errors(HEADER.encode() + b"ok,india,food,\n\xff\xfe bad,india,food,\n")
    assert errors == ["line 3: undecodable bytes (not UTF-8) at byte 0"]


def test_duplicate_row_names_both_lines():
    errors = _errors(HEADER + "a hanok,korea,architecture,\nA  hanok,korea,clothing,\n")
    assert errors == ["line 3: duplicate of line 2"]


@pytest.mark.parametrize("seeds", ["-1", "1.5", "x", "4294967296", "3 3"])
def test_bad_seed_names_its_line(seeds):
    errors = _errors(HEADER + f"a hanok,korea,architecture,{seeds}\n")
    assert len(errors) == 1 and errors[0].startswith("line 2: ")
    assert "seed" in errors[0]


def test_too_many_tokens_is_refused_when_a_tokenizer_is_given():
    with pytest.raises(BatchFileError) as caught:
        prompt_rows_parse(
            (HEADER + "word " * 80 + ",india,food,\n").encode(),
            filename="b.csv",
            known_cohorts=KNOWN,
            token_count=lambda text: len(text.split()) + 2,
        )
    assert "82 tokens" in str(caught.value)


def test_every_bad_row_is_reported_not_only_the_first():
    errors = _errors(HEADER + ",india,food,\ntacos,mexico,food,\nfine,india,food,x\n")
    assert [error.split(":")[0] for error in errors] == ["line 2", "line 3", "line 4"]


def test_bad_header_is_reported():
    assert "missing column(s) cohort" in _errors("prompt,culture,category\na,india,food\n")[0]


def test_jsonl_rows_are_validated_too():
    errors = _errors(
        '{"prompt": "a hanok", "cohort": "korea", "category": "food"}\n[1]\n', filename="b.jsonl"
    )
    assert errors == ["line 2: each line must be a JSON object"]


def test_file_without_prompts_is_refused():
    assert _errors(HEADER) == ["The file holds no prompts."]
