"""pair_assign: which new regular pair a rater is served, and the coverage that decides it."""

from __future__ import annotations

import random
import re
import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from generation.models import Image, ModelVariant, Prompt, PromptBatch
from generation.rendering.services import pairs_form
from ratings.assignment.pools import ASSIGN_WINDOW
from ratings.assignment.services import pair_assign
from ratings.entry.services import participation_consent, rater_cohorts_set, rater_ensure
from ratings.models import Assignment, Cohort, Pair, PairCoverage, Rater, Study
from ratings.studies import cohort_ensure
from ratings.voting.services import vote_cast

ANSWERS = {"alignment": "1", "representation": "2", "stereotype": "tie", "offensiveness": "skip"}


def _rater(name: str, *cohort_paths: str) -> Rater:
    user = User.objects.create_user(username=name, password="x-" + name)
    rater = rater_ensure(user=user)
    participation_consent(study=Study.objects.get(slug="test-study"), rater=rater)
    rater_cohorts_set(rater=rater, cohorts=[Cohort.objects.get(path=path) for path in cohort_paths])
    return rater


def _coverage(pair: Pair, path: str) -> PairCoverage:
    return PairCoverage.objects.get(pair=pair, cohort__path=path)


def _votes_set(pair: Pair, path: str, votes: int) -> None:
    PairCoverage.objects.filter(pair=pair, cohort__path=path).update(votes=votes)


def _cast(rater: Rater, assignment: Assignment) -> None:
    vote_cast(rater=rater, assignment_id=assignment.pk, answers=ANSWERS)


def test_forming_a_pair_opens_coverage_for_its_cohort_ancestors_and_study_cohorts_below(
    pair_factory,
):
    india = pair_factory(cohort_path="india")
    tamil = pair_factory(cohort_path="india:tamil")
    rows = {
        pair.pk: sorted(pair.coverage.values_list("cohort__path", flat=True))
        for pair in (india, tamil)
    }
    assert rows[india.pk] == ["india", "india:kerala", "india:tamil"]
    assert rows[tamil.pk] == ["india", "india:tamil"]
    assert not PairCoverage.objects.exclude(votes=0).exists()


def test_rater_gets_in_group_pairs_and_out_group_ones_only_at_the_study_share(pair_factory):
    random.seed(7)
    study = Study.objects.get(slug="test-study")
    study.outgroup_share = 0.25
    study.save()
    for _ in range(24):
        pair_factory(cohort_path="india")
    for path in ("korea", "nigeria", "india:tamil"):
        for _ in range(6):
            pair_factory(cohort_path=path)
    rater = _rater("ravi", "india:kerala")

    served = [pair_assign(study=study, rater=rater) for _ in range(24)]
    prompt_paths = [assignment.pair.prompt.cohort.path for assignment in served]
    outgroup = [a for a in served if a.cohort_id is None]
    # Every 4th pair is foreign, and only then; the first ones are the rater's own culture.
    assert [i for i, a in enumerate(served) if a.cohort_id is None] == [3, 7, 11, 15, 19, 23]
    assert {a.pair.prompt.cohort.path for a in outgroup} <= {"korea", "nigeria"}
    in_group = [path for a, path in zip(served, prompt_paths, strict=True) if a.cohort_id]
    assert set(in_group) == {"india"}  # india:tamil is neither Kerala's nor foreign
    assert {a.cohort.path for a in served if a.cohort_id} == {"india:kerala"}


def test_without_an_out_group_share_a_rater_never_gets_another_cultures_pairs(pair_factory):
    own = pair_factory(cohort_path="india")
    pair_factory(cohort_path="korea")
    study = own.study
    assert study.outgroup_share == 0
    rater = _rater("ravi", "india")
    assert pair_assign(study=study, rater=rater).pair == own
    assert pair_assign(study=study, rater=rater) is None


def test_subculture_rater_gets_pairs_of_their_culture_and_their_own_not_a_sibling(pair_factory):
    india = pair_factory(cohort_path="india")
    tamil = pair_factory(cohort_path="india:tamil")
    pair_factory(cohort_path="india:kerala")
    rater = _rater("kavya", "india:tamil")
    served = {pair_assign(study=india.study, rater=rater) for _ in range(2)}
    assert {assignment.pair for assignment in served} == {india, tamil}
    assert {assignment.cohort.path for assignment in served} == {"india:tamil"}
    assert pair_assign(study=india.study, rater=rater) is None


def test_rater_is_never_served_a_pair_twice_even_one_they_skipped(pair_factory):
    pairs = {pair_factory().pk for _ in range(3)}
    rater = _rater("ravi", "india")
    study = Study.objects.get(slug="test-study")
    first = pair_assign(study=study, rater=rater)
    Assignment.objects.filter(pk=first.pk).update(skipped_at=timezone.now())
    others = [pair_assign(study=study, rater=rater) for _ in range(2)]
    assert sorted([first.pair_id, *(a.pair_id for a in others)]) == sorted(pairs)
    assert pair_assign(study=study, rater=rater) is None


def test_only_pairs_below_target_are_served_fewest_votes_first(pair_factory):
    some, none, full = pair_factory(), pair_factory(), pair_factory()
    study = some.study  # raters_per_pair = 3
    _votes_set(some, "india", 2)
    _votes_set(full, "india", 3)
    rater = _rater("ravi", "india")
    assert pair_assign(study=study, rater=rater).pair == none
    assert pair_assign(study=study, rater=rater).pair == some
    assert pair_assign(study=study, rater=rater) is None


def test_live_reservations_spread_raters_and_fill_places(pair_factory):
    pairs = [pair_factory() for _ in range(3)]
    study = pairs[0].study
    raters = [_rater(f"r{i}", "india") for i in range(10)]
    served = [pair_assign(study=study, rater=rater).pair_id for rater in raters[:9]]
    # Each of the first three raters gets a pair nobody holds; then each pair a second holder.
    assert sorted(served[:3]) == sorted(pair.pk for pair in pairs)
    assert sorted(served[3:6]) == sorted(pair.pk for pair in pairs)
    # Three places per pair, all reserved: the tenth rater waits.
    assert pair_assign(study=study, rater=raters[9]) is None


def test_expired_reservations_return_their_pair_and_voted_ones_count_as_votes(pair_factory):
    pair = pair_factory()
    study = pair.study
    study.raters_per_pair = 1
    study.save()
    first, second = _rater("ann", "india"), _rater("bob", "india")
    now = timezone.now()
    held = pair_assign(study=study, rater=first, now=now)
    assert held.pair == pair
    assert pair_assign(study=study, rater=second, now=now) is None
    later = held.expires_at + timedelta(seconds=1)
    assert pair_assign(study=study, rater=second, now=later).pair == pair

    third = _rater("cem", "india")
    _cast(second, Assignment.objects.get(rater=second))
    assert _coverage(pair, "india").votes == 1
    assert pair_assign(study=study, rater=third, now=later) is None


def test_a_vote_counts_in_the_raters_cohort_and_its_ancestors(pair_factory):
    tamil_pair = pair_factory(cohort_path="india:tamil")
    india_pair = pair_factory(cohort_path="india")
    study = tamil_pair.study
    rater = _rater("kavya", "india:tamil", "nigeria")
    for _ in range(2):
        _cast(rater, pair_assign(study=study, rater=rater))
    rows = {
        (row.pair_id, row.cohort.path): (row.votes, row.outgroup_votes)
        for row in PairCoverage.objects.select_related("cohort")
    }
    assert rows == {
        (tamil_pair.pk, "india"): (1, 0),
        (tamil_pair.pk, "india:tamil"): (1, 0),
        (india_pair.pk, "india"): (1, 0),
        (india_pair.pk, "india:tamil"): (1, 0),
        (india_pair.pk, "india:kerala"): (0, 0),
    }


def test_a_tamil_vote_fills_a_place_of_india_too(pair_factory):
    pair = pair_factory(cohort_path="india:tamil")
    study = pair.study
    study.raters_per_pair = 1
    study.save()
    tamil, india = _rater("kavya", "india:tamil"), _rater("asha", "india")
    held = pair_assign(study=study, rater=tamil)
    # Held by a Tamil rater, whose vote will count in India: no place left for India.
    assert pair_assign(study=study, rater=india) is None
    _cast(tamil, held)
    assert _coverage(pair, "india").votes == 1
    assert pair_assign(study=study, rater=india) is None


def test_an_out_group_vote_counts_apart_from_the_cultures_own(pair_factory):
    pair = pair_factory(cohort_path="india")
    study = pair.study
    study.outgroup_share = 1.0
    study.save()
    rater = _rater("minji", "korea")
    assignment = pair_assign(study=study, rater=rater)
    assert assignment.pair == pair and assignment.cohort is None
    _cast(rater, assignment)
    assert (_coverage(pair, "india").votes, _coverage(pair, "india").outgroup_votes) == (0, 1)
    assert not PairCoverage.objects.filter(cohort__path="korea").exists()


def test_attention_check_pairs_are_never_served(pair_factory):
    regular = pair_factory()
    study = regular.study
    image = regular.image_a
    check = Pair.objects.create(
        study=study,
        prompt=regular.prompt,
        seed=regular.seed,
        image_a=image,
        image_b=image,
        variant_a=image.variant,
        variant_b=image.variant,
        is_attention_check=True,
    )
    # Even with a coverage row, as if someone had made one, the check is never served.
    PairCoverage.objects.create(study=study, pair=check, cohort=Cohort.objects.get(path="india"))
    _votes_set(regular, "india", 1)
    rater = _rater("ravi", "india")
    assert pair_assign(study=study, rater=rater).pair == regular
    assert pair_assign(study=study, rater=rater) is None


def test_cohort_added_to_a_study_later_gets_the_existing_pairs(pair_factory):
    pair = pair_factory(cohort_path="india")
    study = pair.study
    punjabi = cohort_ensure(path="india:punjabi")
    assert not PairCoverage.objects.filter(pair=pair, cohort=punjabi).exists()
    study.cohorts.add(punjabi)
    assert _coverage(pair, "india:punjabi").votes == 0
    rater = _rater("jas", "india:punjabi")
    assignment = pair_assign(study=study, rater=rater)
    assert assignment.pair == pair
    assert assignment.cohort == punjabi  # counted toward Punjabi, the study's own cohort now


def test_rater_whose_sub_culture_is_not_in_the_study_gets_its_cultures_pairs(pair_factory):
    india = pair_factory(cohort_path="india")
    pair_factory(cohort_path="india:kerala")
    pair_factory(cohort_path="korea")
    study = india.study
    punjabi_in_india = pair_factory(cohort_path="india")
    cohort_ensure(path="india:punjabi")  # a cohort of no study's
    rater = _rater("jas", "india:punjabi")
    served = [pair_assign(study=study, rater=rater) for _ in range(2)]
    # India's pairs, not Kerala's (a sibling) nor Korea's, counted toward India.
    assert {assignment.pair for assignment in served} == {india, punjabi_in_india}
    assert {assignment.cohort.path for assignment in served} == {"india"}
    assert pair_assign(study=study, rater=rater) is None
    _cast(rater, served[0])
    assert _coverage(served[0].pair, "india").votes == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_raters_never_fill_a_pair_beyond_its_target(pair_factory):
    pairs = [pair_factory() for _ in range(3)]
    study = pairs[0].study
    study.raters_per_pair = 2
    study.save()
    _votes_set(pairs[0], "india", 1)  # one place left there, two on the others
    raters = [_rater(f"r{i}", "india") for i in range(12)]
    barrier = threading.Barrier(len(raters))
    served: list[int | None] = []
    errors: list[BaseException] = []

    def ask(rater_id: int) -> None:
        try:
            rater = Rater.objects.get(pk=rater_id)
            barrier.wait()
            assignment = pair_assign(study=study, rater=rater)
            served.append(assignment.pair_id if assignment else None)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=ask, args=(rater.pk,)) for rater in raters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    held = [pair_id for pair_id in served if pair_id is not None]
    assert sorted(held) == sorted([pairs[0].pk, *(pair.pk for pair in pairs[1:] for _ in "ab")])
    assert Assignment.objects.count() == 5


def _bulk_pairs(study: Study, cohort: Cohort, count: int) -> None:
    """Add `count` pairs of one cohort with random coverage, in SQL, as many as a real study."""
    batch = PromptBatch.objects.create(study=study, seeds_per_prompt=1)
    base, tuned = ModelVariant.objects.order_by("role").values_list("pk", flat=True)[:2]
    related = [c.pk for c in Cohort.objects.all() if c.path.split(":")[0] == cohort.path]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH prompts AS (
                INSERT INTO {Prompt._meta.db_table} (batch_id, text, category, cohort_id)
                SELECT %s, 'bulk prompt ' || n, '', %s FROM generate_series(1, %s) n
                RETURNING id
            ), images AS (
                INSERT INTO {Image._meta.db_table} (prompt_id, variant_id, seed, status, file,
                    preview, fingerprint, error, attempts, worker, claimed_by, queued_at)
                SELECT prompts.id, variant.id, 1, 'done', 'images/bulk.png', '', '', '', 0,
                    '', '', now()
                FROM prompts CROSS JOIN (VALUES (%s::bigint), (%s::bigint)) variant(id)
                RETURNING id, prompt_id, variant_id
            ), pairs AS (
                INSERT INTO {Pair._meta.db_table} (study_id, prompt_id, seed, image_a_id,
                    image_b_id, variant_a_id, variant_b_id, is_attention_check, external_id,
                    created_at)
                SELECT %s, a.prompt_id, 1, a.id, b.id, a.variant_id, b.variant_id, false, '',
                    now()
                FROM images a JOIN images b ON a.prompt_id = b.prompt_id
                WHERE a.variant_id = %s AND b.variant_id = %s
                RETURNING id
            )
            INSERT INTO {PairCoverage._meta.db_table}
                (study_id, pair_id, cohort_id, votes, outgroup_votes)
            SELECT %s, pairs.id, cohort.id, floor(random() * 4)::int, 0
            FROM pairs CROSS JOIN unnest(%s::bigint[]) cohort(id)
            """,
            [batch.pk, cohort.pk, count, base, tuned, study.pk, base, tuned, study.pk, related],
        )
        cursor.execute(f"ANALYZE {PairCoverage._meta.db_table}")
        cursor.execute(f"ANALYZE {Pair._meta.db_table}")
        cursor.execute(f"ANALYZE {Assignment._meta.db_table}")


def _generic_plan(sql: str, params: dict) -> str:
    """EXPLAIN ANALYZE a statement as the app runs it: prepared, planned for any parameters."""
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
    prepared = re.sub(r"%\((\w+)\)s", lambda match: f"${names.index(match.group(1)) + 1}", sql)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE planned AS {prepared}")
        values = ", ".join(["%s"] * len(names))
        cursor.execute(
            f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE planned({values})", [params[n] for n in names]
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("DEALLOCATE planned")
    return plan


def test_assignment_query_reads_the_coverage_index_not_the_whole_table(study, variants):
    _bulk_pairs(study, Cohort.objects.get(path="india"), 7_000)  # 21,000 coverage rows
    rater = _rater("ravi", "india:tamil")
    statements: list[tuple[str, dict]] = []

    def record(execute, sql, params, many, context):
        statements.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        assert pair_assign(study=study, rater=rater) is not None
    claim, params = next(
        (sql, params)
        for sql, params in statements
        if "ratings_paircoverage" in sql and "FOR UPDATE" in sql and "ORDER BY" in sql
    )
    plan = _generic_plan(claim, params)
    assert "coverage_least_first" in plan, plan
    assert "Seq Scan on ratings_paircoverage" not in plan, plan
    assert "Seq Scan on ratings_pair " not in plan, plan
    # Every read of the coverage index stops near the window's size: ranges, not the study.
    read = re.findall(r"coverage_least_first .*?actual time=\S+ rows=(\d+)", plan)
    assert read and max(map(int, read)) <= 2 * ASSIGN_WINDOW, plan


def test_no_rater_is_served_an_image_twice_outside_a_repeat_check(study):
    """One base and three fine-tuned variants: each prompt and seed makes three pairs that
    share the base image. A rater who saw two of them would know the base (the image seen
    twice); so a rater gets at most one of them, and an identical check's image is never
    shown again either. Only a repeat check shows the same images again, on purpose."""
    from ratings.assignment.services import assignment_for_rater

    Study.objects.filter(pk=study.pk).update(
        raters_per_pair=12, pairs_per_rater=100, attention_check_rate=0.2, min_seconds_per_pair=0
    )
    common = {"steps": 2, "width": 32, "height": 32, "base_checkpoint": "/nowhere/tiny"}
    variants = [ModelVariant.objects.create(name="plain", role="base", **common)] + [
        ModelVariant.objects.create(
            name=f"tuned-{n}", role="finetuned", lora_path=f"/nowhere/{n}.safetensors", **common
        )
        for n in range(3)
    ]
    batch = PromptBatch.objects.create(study=study, seeds_per_prompt=2)
    batch.variants.set(variants)
    seeds = 0
    for n in range(6):
        prompt = Prompt.objects.create(
            batch=batch, text=f"a harvest festival #{n}", cohort=Cohort.objects.get(path="india")
        )
        for seed in (1000 + n, 2000 + n):
            seeds += 1
            for variant in variants:
                Image.objects.create(
                    prompt=prompt,
                    variant=variant,
                    seed=seed,
                    status=Image.Status.DONE,
                    file=f"images/{variant.name}-{seed}.png",
                )
        assert len(pairs_form(prompt=prompt)) == 6  # two seeds, three pairs each
    raters = [_rater(f"rater-{n}", "india") for n in range(12)]
    kinds: dict[str, int] = {}
    for rater in raters:
        shown: dict[int, int] = {}  # image id -> assignments that showed it, but repeats
        while (assignment := assignment_for_rater(study=study, rater=rater)) is not None:
            assignment.refresh_from_db()
            kinds[assignment.kind] = kinds.get(assignment.kind, 0) + 1
            if assignment.kind != "repeat":
                for image_id in {assignment.pair.image_a_id, assignment.pair.image_b_id}:
                    shown[image_id] = shown.get(image_id, 0) + 1
            answers = ANSWERS if assignment.kind == "pair" else dict.fromkeys(ANSWERS, "tie")
            vote_cast(
                rater=rater,
                assignment_id=assignment.pk,
                answers=answers,
                now=assignment.served_at + timedelta(seconds=5),
            )
        twice = {image_id: count for image_id, count in shown.items() if count > 1}
        assert not twice, f"{rater.user.username} was shown images twice: {twice}"
        # At most one pair of each prompt and seed (without the rule, all 36 pairs); each seed
        # was spent on this rater by a pair or an identical check of one of its images.
        regular = Assignment.objects.filter(rater=rater, kind="pair").count()
        identical = Assignment.objects.filter(rater=rater, kind="identical").count()
        assert regular <= seeds <= regular + identical
    # Checks of both kinds were served, so both were held to the rule.
    assert kinds["pair"] > 60 and kinds.get("identical", 0) > 0 and kinds.get("repeat", 0) > 0
