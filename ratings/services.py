"""Services that change rating state: studies, cohorts, raters, assignments and votes."""

from __future__ import annotations

import random
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext

from ratings.cohorts import cohort_path_ancestors, cohort_path_contains, cohort_path_normalize
from ratings.models import (
    DEFAULT_CRITERIA,
    Answer,
    Assignment,
    AssignmentKind,
    Choice,
    Cohort,
    CohortProposal,
    ConsentDecline,
    Criterion,
    Pair,
    PairCoverage,
    Participation,
    Rater,
    Side,
    Study,
    StudyInvite,
    Vote,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

# What a rater's form says, in screen terms; the vote is stored in variant terms.
SCREEN_ANSWERS = ("1", "2", "tie", "skip")
MAX_TIME_ON_TASK_MS = 2**31 - 1


class VoteRefused(Exception):
    """A vote that cannot be stored; `status` is the HTTP status that says why."""

    def __init__(self, reason: str, *, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def study_create(
    *, name: str, slug: str, cohort_paths: Iterable[str] = (), **fields: object
) -> Study:
    """Create a study with the default criteria and the given cohorts (made if missing)."""
    with transaction.atomic():
        study = Study.objects.create(name=name, slug=slug, **fields)
        criteria_ensure_defaults(study=study)
        study.cohorts.set([cohort_ensure(path=path) for path in cohort_paths])
    return study


def criteria_ensure_defaults(*, study: Study) -> None:
    """Give a study with no criteria the four default questions."""
    if study.criteria.exists():
        return
    Criterion.objects.bulk_create(
        Criterion(study=study, key=key, question=question, position=position)
        for position, (key, question) in enumerate(DEFAULT_CRITERIA)
    )


def cohort_ensure(*, path: str, name: str = "") -> Cohort:
    """Return the cohort at `path`, creating it and any missing ancestors."""
    path = cohort_path_normalize(path)
    cohort = None
    for ancestor in cohort_path_ancestors(path):
        default_name = ancestor.rsplit(":", 1)[-1].replace("_", " ").replace("-", " ").title()
        cohort, _ = Cohort.objects.get_or_create(
            path=ancestor,
            defaults={"name": name if ancestor == path and name else default_name},
        )
    assert cohort is not None
    return cohort


def rater_ensure(*, user: AbstractBaseUser) -> Rater:
    """Return the user's rater profile, creating an empty one on first use."""
    rater, _ = Rater.objects.get_or_create(user=user)
    return rater


def participation_ensure(*, study: Study, rater: Rater) -> Participation:
    """Return the rater's participation in the study, creating it on first use."""
    participation, _ = Participation.objects.get_or_create(study=study, rater=rater)
    return participation


def participation_consent(*, study: Study, rater: Rater) -> Participation:
    """Record that the rater accepted the study's consent text, once."""
    participation = participation_ensure(study=study, rater=rater)
    Participation.objects.filter(pk=participation.pk, consented_at__isnull=True).update(
        consented_at=timezone.now()
    )
    participation.refresh_from_db(fields=["consented_at"])
    return participation


def consent_decline(*, study: Study, rater: Rater | None = None) -> bool:
    """Record that someone declined the study's consent; nothing about who.

    What entering the study left behind goes: the rater's participation, not yet consented,
    and a panel rater made for this visit who has nothing else. Tell whether the rater went.
    """
    with transaction.atomic():
        ConsentDecline.objects.create(study=study)
        if rater is None:
            return False
        Participation.objects.filter(study=study, rater=rater, consented_at__isnull=True).delete()
        if (
            rater.panel_id is not None
            and not rater.participations.exists()
            and not rater.votes.exists()
        ):
            rater.user.delete()
            return True
    return False


def rater_cohorts_set(*, rater: Rater, cohorts: Sequence[Cohort]) -> None:
    """Replace the rater's cohorts; votes already cast keep the labels they were cast with."""
    if not cohorts:
        raise ValueError("A rater needs at least one cohort.")
    rater.cohorts.set(cohorts)


def _in_group_filter(cohort_paths: Sequence[str]) -> Q:
    # A rater of india:tamil is also Indian: prompts aimed at india, india:tamil and anything
    # below india:tamil are in-group; india:kerala is not.
    condition = Q(pk__in=[])
    for path in cohort_paths:
        condition |= Q(prompt__cohort__path__in=cohort_path_ancestors(path))
        condition |= Q(prompt__cohort__path__startswith=path + ":")
    return condition


def assignment_next(
    *, study: Study, rater: Rater, now: datetime | None = None
) -> Assignment | None:
    """Serve the rater a pair: their open one, else a new one from pair_assign."""
    now = now or timezone.now()
    expires_at = now + timedelta(minutes=settings.POLYPHONY_ASSIGNMENT_MINUTES)
    open_assignment = (
        Assignment.objects.filter(rater=rater, pair__study=study, skipped_at__isnull=True)
        .exclude(pair__votes__rater=rater)
        .order_by("served_at")
        .first()
    )
    if open_assignment is not None:
        Assignment.objects.filter(pk=open_assignment.pk).update(expires_at=expires_at)
        return open_assignment
    return pair_assign(study=study, rater=rater, now=now)


def vote_cast(
    *,
    rater: Rater,
    assignment_id: object,
    answers: Mapping[str, str],
    comment: str = "",
    now: datetime | None = None,
) -> Vote:
    """Store a rater's answers to a pair they were served, translated from screen sides.

    `answers` maps each criterion key to "1" (Image 1, on the left), "2", "tie" or "skip".
    An attention check is marked passed or failed as it is stored, every vote gets the time
    check, and the rater's participation counts both and flags the rater past the allowance.
    """
    now = now or timezone.now()
    assignment = _assignment_of_rater(rater=rater, assignment_id=assignment_id)
    pair = assignment.pair
    study = pair.study
    if not study.active:
        raise VoteRefused(gettext("This study is closed."), status=409)
    if assignment.skipped_at is not None:
        raise VoteRefused(gettext("You skipped this pair."), status=409)
    if _assignment_voted(assignment=assignment):
        raise VoteRefused(gettext("You have already voted on this pair."), status=409)

    criteria = list(study.criteria.all())
    keys = {criterion.key for criterion in criteria}
    missing = [criterion.key for criterion in criteria if criterion.key not in answers]
    unknown = sorted(set(answers) - keys)
    if missing:
        raise VoteRefused(
            gettext("Answer every question; missing: %(keys)s.") % {"keys": ", ".join(missing)}
        )
    if unknown:
        raise VoteRefused(gettext("Unknown question(s): %(keys)s.") % {"keys": ", ".join(unknown)})
    bad = {key: value for key, value in answers.items() if value not in SCREEN_ANSWERS}
    if bad:
        key, value = next(iter(bad.items()))
        raise VoteRefused(
            gettext("'%(value)s' is not an answer to %(key)s: use 1, 2, tie or skip.")
            % {"value": value, "key": key}
        )
    if len(comment) > 2000:
        raise VoteRefused(gettext("The comment is longer than 2000 characters."))

    shown_right = Side.B if assignment.shown_left == Side.A else Side.A
    by_screen = {
        "1": assignment.shown_left,
        "2": shown_right,
        "tie": Choice.TIE,
        "skip": Choice.SKIP,
    }
    choices = {criterion.key: by_screen[answers[criterion.key]] for criterion in criteria}
    elapsed_ms = int((now - assignment.served_at).total_seconds() * 1000)
    time_on_task_ms = max(0, min(elapsed_ms, MAX_TIME_ON_TASK_MS))
    too_fast = time_on_task_ms < study.min_seconds_per_pair * 1000
    check_passed = _check_passed(assignment=assignment, choices=choices)
    try:
        with transaction.atomic():
            vote = Vote.objects.create(
                study=study,
                pair=pair,
                rater=rater,
                shown_left=assignment.shown_left,
                cohort_paths=rater.cohort_paths(),
                time_on_task_ms=time_on_task_ms,
                comment=comment.strip(),
                kind=assignment.kind,
                check_passed=check_passed,
                too_fast=too_fast,
            )
            Answer.objects.bulk_create(
                Answer(vote=vote, criterion=criterion, choice=choices[criterion.key])
                for criterion in criteria
            )
            if vote.kind == AssignmentKind.PAIR:
                pair_coverage_record(vote=vote)
            # The reservation has done its job; it must not count as pending work any more.
            Assignment.objects.filter(pk=assignment.pk).update(expires_at=now)
            _participation_record_vote(study=study, rater=rater, vote=vote, now=now)
    except IntegrityError as exc:
        raise VoteRefused(gettext("You have already voted on this pair."), status=409) from exc
    return vote


# Rating in the browser: what a rater is served next, skips, and the quality checks.

# Why a rater may skip a pair, as the skip form offers them; "other" may carry the rater's words.
SKIP_REASONS = ("cant_see", "unfamiliar", "other")
SKIP_NOTE_MAX = 160


# What the rating page reads of an assignment, fetched with it.
_PAGE_RELATED = ("pair__study", "pair__prompt__cohort", "pair__image_a", "pair__image_b")


def _assignment_of_rater(*, rater: Rater, assignment_id: object) -> Assignment:
    try:
        assignment_uuid = uuid.UUID(str(assignment_id))
    except ValueError as exc:
        raise VoteRefused(gettext("This pair was not served to you."), status=404) from exc
    assignment = (
        Assignment.objects.select_related("pair__study")
        .filter(pk=assignment_uuid, rater=rater)
        .first()
    )
    if assignment is None:
        raise VoteRefused(gettext("This pair was not served to you."), status=404)
    return assignment


def _assignment_voted(*, assignment: Assignment) -> bool:
    # A repeat check is answered by the one repeat vote on its pair; anything else by the
    # rater's first vote on the pair.
    votes = Vote.objects.filter(rater_id=assignment.rater_id, pair_id=assignment.pair_id)
    if assignment.kind == AssignmentKind.REPEAT_CHECK:
        return votes.filter(kind=AssignmentKind.REPEAT_CHECK).exists()
    return votes.exclude(kind=AssignmentKind.REPEAT_CHECK).exists()


def _assignments_open(*, study: Study, rater: Rater):
    """Return the rater's assignments in the study that are neither voted on nor skipped."""
    votes = Vote.objects.filter(rater=OuterRef("rater"), pair=OuterRef("pair"))
    return (
        Assignment.objects.filter(rater=rater, pair__study=study, skipped_at__isnull=True)
        .annotate(
            voted_first=Exists(votes.exclude(kind=AssignmentKind.REPEAT_CHECK)),
            voted_repeat=Exists(votes.filter(kind=AssignmentKind.REPEAT_CHECK)),
        )
        .filter(
            Q(kind=AssignmentKind.REPEAT_CHECK, voted_repeat=False)
            | (~Q(kind=AssignmentKind.REPEAT_CHECK) & Q(voted_first=False))
        )
    )


def _regular_votes(*, study: Study, rater: Rater) -> int:
    return Vote.objects.filter(study=study, rater=rater, kind=AssignmentKind.PAIR).count()


def _expiry(now: datetime) -> datetime:
    return now + timedelta(minutes=settings.POLYPHONY_ASSIGNMENT_MINUTES)


def _check_passed(*, assignment: Assignment, choices: Mapping[str, str]) -> bool | None:
    """Say whether a check's answers are the ones it expects; None for a regular pair."""
    if assignment.kind == AssignmentKind.IDENTICAL_CHECK:
        # One image shown twice: every criterion must be "both equally". "Can't judge" fails:
        # two identical images can always be judged equal, and answering "can't judge"
        # everywhere must not be a way past the checks.
        return all(choice == Choice.TIE for choice in choices.values())
    if assignment.kind == AssignmentKind.REPEAT_CHECK:
        earlier = dict(
            Answer.objects.filter(
                vote__rater_id=assignment.rater_id, vote__pair_id=assignment.pair_id
            )
            .exclude(vote__kind=AssignmentKind.REPEAT_CHECK)
            .values_list("criterion__key", "choice")
        )
        # Same pair, sides swapped: every answer given both times must name the same variant
        # (or tie) again. "Can't judge" either time says nothing, so it is left out; a check
        # with nothing left to compare is inconclusive and counts neither way.
        compared = [
            choice == earlier[key]
            for key, choice in choices.items()
            if choice != Choice.SKIP and earlier.get(key, Choice.SKIP) != Choice.SKIP
        ]
        return all(compared) if compared else None
    return None


def _participation_record_vote(*, study: Study, rater: Rater, vote: Vote, now: datetime) -> None:
    """Count the vote's checks, flag the rater past the allowance, note a met quota."""
    participation = participation_ensure(study=study, rater=rater)
    rows = Participation.objects.filter(pk=participation.pk)
    # A vote under the minimum time is a failed check whatever its answers.
    failed = vote.too_fast or vote.check_passed is False
    if failed:
        rows.update(checks_failed=F("checks_failed") + 1)
        rows.filter(flagged=False, checks_failed__gt=study.max_failed_checks).update(flagged=True)
    elif vote.check_passed:
        rows.update(checks_passed=F("checks_passed") + 1)
    if vote.kind == AssignmentKind.PAIR and _regular_votes(study=study, rater=rater) >= (
        study.pairs_per_rater
    ):
        rows.filter(completed_at__isnull=True).update(completed_at=now)
        # Done: whatever else was reserved for this rater goes back to the pool.
        _assignments_open(study=study, rater=rater).update(expires_at=now)
        return
    _assignment_clock_start(study=study, rater=rater, now=now)


def _assignment_clock_start(*, study: Study, rater: Rater, now: datetime) -> None:
    # The next pair was reserved (and its images prefetched) while the last one was on screen;
    # its time on task starts now, when it is the one shown.
    upcoming = _assignments_open(study=study, rater=rater).order_by("served_at").first()
    if upcoming is not None:
        Assignment.objects.filter(pk=upcoming.pk).update(served_at=now, expires_at=_expiry(now))


def _attention_check_due(*, study: Study, rater: Rater) -> bool:
    """Say whether the next assignment should be a check: when checks fall behind the rate.

    A counter, not a coin: with a rate of 0.1 the 10th, 20th, … assignments are checks. Two
    checks never follow each other, so a rate above one half acts as one half.
    """
    rate = study.attention_check_rate
    if rate <= 0:
        return False
    served = Assignment.objects.filter(rater=rater, pair__study=study)
    last = served.order_by("-served_at").values_list("kind", flat=True).first()
    if last is None or last != AssignmentKind.PAIR:
        return False
    checks = served.exclude(kind=AssignmentKind.PAIR).count()
    return checks + 1 <= rate * (served.count() + 1) + 1e-9


def _identical_check_serve(*, study: Study, rater: Rater, now: datetime) -> Assignment | None:
    """Serve one done image of an in-group prompt twice, as a check pair made on demand."""
    cohort_paths = rater.cohort_paths()
    if not cohort_paths:
        return None
    sources = (
        Pair.objects.filter(study=study, is_attention_check=False)
        .filter(_in_group_filter(cohort_paths))
        .select_related("image_a", "image_b")
        .order_by("?")
    )
    for source in sources[:5]:
        image = secrets.choice([source.image_a, source.image_b])
        check_pair, _ = Pair.objects.get_or_create(
            image_a=image,
            image_b=image,
            defaults={
                "study": study,
                "prompt_id": source.prompt_id,
                "seed": source.seed,
                "variant_a_id": image.variant_id,
                "variant_b_id": image.variant_id,
                "is_attention_check": True,
            },
        )
        if Assignment.objects.filter(rater=rater, pair=check_pair).exists():
            continue
        try:
            with transaction.atomic():
                return Assignment.objects.create(
                    rater=rater,
                    pair=check_pair,
                    kind=AssignmentKind.IDENTICAL_CHECK,
                    shown_left=Side.A,
                    expires_at=_expiry(now),
                )
        except IntegrityError:
            continue
    return None


def _repeat_check_serve(*, study: Study, rater: Rater, now: datetime) -> Assignment | None:
    """Serve again, sides swapped, a pair the rater voted on earlier (not the last one served)."""
    first_votes = Vote.objects.filter(rater=rater, pair=OuterRef("pair"), kind=AssignmentKind.PAIR)
    repeats = Assignment.objects.filter(
        rater=rater, pair=OuterRef("pair"), kind=AssignmentKind.REPEAT_CHECK
    )
    # The same pair twice in a row is too easy to spot: never repeat the one served last.
    latest_pair_id = (
        Assignment.objects.filter(rater=rater, pair__study=study)
        .order_by("-served_at")
        .values_list("pair_id", flat=True)
        .first()
    )
    earlier = (
        Assignment.objects.filter(rater=rater, pair__study=study, kind=AssignmentKind.PAIR)
        .filter(Exists(first_votes))
        .exclude(Exists(repeats))
        .exclude(pair_id=latest_pair_id)
        .order_by("served_at")
        .first()
    )
    if earlier is None:
        return None
    return Assignment.objects.create(
        rater=rater,
        pair_id=earlier.pair_id,
        kind=AssignmentKind.REPEAT_CHECK,
        repeat_of=earlier,
        shown_left=Side.B if earlier.shown_left == Side.A else Side.A,
        expires_at=_expiry(now),
    )


def _attention_check_serve(*, study: Study, rater: Rater, now: datetime) -> Assignment | None:
    # Alternate the two kinds; a repeat needs an earlier vote, so it may have to wait.
    kinds = Assignment.objects.filter(rater=rater, pair__study=study)
    identical = kinds.filter(kind=AssignmentKind.IDENTICAL_CHECK).count()
    repeats = kinds.filter(kind=AssignmentKind.REPEAT_CHECK).count()
    order = [_identical_check_serve, _repeat_check_serve]
    if repeats < identical:
        order.reverse()
    for serve in order:
        assignment = serve(study=study, rater=rater, now=now)
        if assignment is not None:
            return assignment
    return None


def _assignment_new(*, study: Study, rater: Rater, now: datetime) -> Assignment | None:
    if _attention_check_due(study=study, rater=rater):
        check = _attention_check_serve(study=study, rater=rater, now=now)
        if check is not None:
            return check
    return pair_assign(study=study, rater=rater, now=now)


def assignment_for_rater(
    *, study: Study, rater: Rater, now: datetime | None = None
) -> Assignment | None:
    """Return what the rater rates now: their open assignment, else a due check, else a pair.

    None once the rater has voted the study's quota of regular pairs, or when nothing is left.
    """
    now = now or timezone.now()
    if _regular_votes(study=study, rater=rater) >= study.pairs_per_rater:
        return None
    current = (
        _assignments_open(study=study, rater=rater)
        .select_related(*_PAGE_RELATED)
        .order_by("served_at")
        .first()
    )
    if current is not None:
        current.expires_at = _expiry(now)
        Assignment.objects.filter(pk=current.pk).update(expires_at=current.expires_at)
        return current
    return _assignment_new(study=study, rater=rater, now=now)


def assignment_reserve_next(
    *, study: Study, rater: Rater, current: Assignment, now: datetime | None = None
) -> Assignment | None:
    """Reserve the assignment that follows `current`, so its images can be fetched early.

    Nothing is reserved when voting on `current` may meet the rater's quota.
    """
    now = now or timezone.now()
    open_assignments = _assignments_open(study=study, rater=rater)
    upcoming = (
        open_assignments.exclude(pk=current.pk)
        .select_related(*_PAGE_RELATED)
        .order_by("served_at")
        .first()
    )
    if upcoming is not None:
        # Still held for this rater while the pair before it is rated.
        upcoming.expires_at = _expiry(now)
        Assignment.objects.filter(pk=upcoming.pk).update(expires_at=upcoming.expires_at)
        return upcoming
    regular_open = open_assignments.filter(kind=AssignmentKind.PAIR).count()
    if _regular_votes(study=study, rater=rater) + regular_open >= study.pairs_per_rater:
        return None
    return _assignment_new(study=study, rater=rater, now=now)


def assignment_skip(
    *,
    rater: Rater,
    assignment_id: object,
    reason: str,
    note: str = "",
    now: datetime | None = None,
) -> Assignment:
    """Mark an assignment skipped with the rater's reason; the pair goes back to the pool.

    The skipped assignment stays, so the pair is never served to this rater again.
    """
    now = now or timezone.now()
    assignment = _assignment_of_rater(rater=rater, assignment_id=assignment_id)
    if not assignment.pair.study.active:
        raise VoteRefused(gettext("This study is closed."), status=409)
    if reason not in SKIP_REASONS:
        raise VoteRefused(gettext("Choose why you skip this pair."))
    note = " ".join(note.split())[:SKIP_NOTE_MAX]
    if _assignment_voted(assignment=assignment):
        raise VoteRefused(gettext("You have already voted on this pair."), status=409)
    skip_reason = f"other: {note}" if reason == "other" and note else reason
    with transaction.atomic():
        skipped = Assignment.objects.filter(pk=assignment.pk, skipped_at__isnull=True).update(
            skipped_at=now, skip_reason=skip_reason, expires_at=now
        )
        if not skipped:
            raise VoteRefused(gettext("You skipped this pair already."), status=409)
        _assignment_clock_start(study=assignment.pair.study, rater=rater, now=now)
    assignment.refresh_from_db()
    return assignment


# Entry: how a rater comes into a study (sign-up, panel links, invites), the cohorts they
# choose or propose, the optional questions about themselves, and completion.


class EntryRefused(Exception):
    """A way into a study that cannot be taken; `status` is the HTTP status that says why."""

    def __init__(self, reason: str, *, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class EmailTaken(Exception):
    """An email address that already belongs to an account, whatever its letter case."""


def rater_sign_up(*, email: str, password: str) -> Rater:
    """Create a user who signs in with their email address, and their rater profile.

    The user name is the email in lower case, so the unique user name makes the email unique
    without regard to case even when two sign-ups race; the password is validated by the form.
    """
    users = get_user_model()
    email = users.objects.normalize_email(email.strip())
    username = email.lower()
    if users.objects.filter(Q(email__iexact=email) | Q(username__iexact=username)).exists():
        raise EmailTaken(email)
    try:
        with transaction.atomic():
            user = users.objects.create_user(username=username, email=email, password=password)
            return Rater.objects.create(user=user)
    except IntegrityError as exc:
        raise EmailTaken(email) from exc


def rater_from_panel(*, panel_id: str) -> Rater:
    """Return the passwordless rater of a crowd-work panel id, creating them on first use.

    The user gets an opaque name and an unusable password: the panel id is never a user name,
    so it shows on no page. Two first visits at once make one rater.
    """
    existing = Rater.objects.select_related("user").filter(panel_id=panel_id).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            user = get_user_model().objects.create_user(username=f"panel-{secrets.token_hex(10)}")
            return Rater.objects.create(user=user, panel_id=panel_id)
    except IntegrityError:
        # Another request made this panel rater first; theirs is the one.
        return Rater.objects.select_related("user").get(panel_id=panel_id)


def participation_from_panel(
    *, study: Study, panel_id: str, panel_study_id: str = "", panel_session_id: str = ""
) -> Participation:
    """Return the panel rater's participation in the study, recording the panel's latest ids."""
    rater = rater_from_panel(panel_id=panel_id)
    participation = participation_ensure(study=study, rater=rater)
    changes = {
        field: value
        for field, value in (
            ("panel_study_id", panel_study_id),
            ("panel_session_id", panel_session_id),
        )
        if value and getattr(participation, field) != value
    }
    if changes:
        Participation.objects.filter(pk=participation.pk).update(**changes)
        for field, value in changes.items():
            setattr(participation, field, value)
    return participation


def _invite_usable(now: datetime) -> Q:
    return (Q(max_uses__isnull=True) | Q(uses__lt=F("max_uses"))) & (
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )


def _invite_refusal(invite: StudyInvite, now: datetime) -> EntryRefused | None:
    if not invite.study.active:
        return EntryRefused(
            gettext("This study has closed. Thank you for your interest."), status=410
        )
    if invite.expires_at is not None and invite.expires_at <= now:
        return EntryRefused(gettext("This invite link has expired."), status=410)
    if invite.max_uses is not None and invite.uses >= invite.max_uses:
        return EntryRefused(
            gettext("This invite link has been used as often as it may be."), status=410
        )
    return None


def invite_create(
    *,
    study: Study,
    created_by: AbstractBaseUser | None = None,
    max_uses: int | None = None,
    expires_at: datetime | None = None,
) -> StudyInvite:
    """Create an invite link to the study."""
    return StudyInvite.objects.create(
        study=study, created_by=created_by, max_uses=max_uses, expires_at=expires_at
    )


def invite_check(*, token: str, now: datetime | None = None) -> StudyInvite:
    """Return the invite with this token, or raise EntryRefused if it cannot be used now."""
    now = now or timezone.now()
    invite = StudyInvite.objects.select_related("study").filter(token=token).first()
    if invite is None:
        raise EntryRefused(
            gettext("This invite link is not valid. Check that you copied all of it."), status=404
        )
    refusal = _invite_refusal(invite, now)
    if refusal is not None:
        raise refusal
    return invite


def invite_redeem(
    *, invite: StudyInvite, rater: Rater, now: datetime | None = None
) -> Participation:
    """Let the rater into the invite's study, counting one use if they were not in it yet.

    The use is claimed with a conditional update that respects max_uses and expires_at, so two
    raters racing for the last use cannot both win; the loser joins nothing.
    """
    now = now or timezone.now()
    with transaction.atomic():
        participation, created = Participation.objects.get_or_create(
            study=invite.study, rater=rater
        )
        if not created:
            return participation
        claimed = StudyInvite.objects.filter(
            _invite_usable(now), pk=invite.pk, study__active=True
        ).update(uses=F("uses") + 1)
        if claimed != 1:
            invite.refresh_from_db()
            raise _invite_refusal(invite, now) or EntryRefused(
                gettext("This invite link can no longer be used."), status=410
            )
    return participation


def cohort_proposal_submit(*, study: Study, rater: Rater, text: str) -> CohortProposal:
    """Record a rater's own name for a culture the study does not list, once per wording."""
    text = " ".join(text.split())[:200]
    if not text:
        raise ValueError("A cohort proposal needs some text.")
    existing = CohortProposal.objects.filter(
        study=study, rater=rater, status=CohortProposal.Status.PENDING, text__iexact=text
    ).first()
    return existing or CohortProposal.objects.create(study=study, rater=rater, text=text)


def rater_cohorts_choose(
    *, study: Study, rater: Rater, cohorts: Sequence[Cohort], proposal: str = ""
) -> CohortProposal | None:
    """Set the rater's cohorts among the study's, and record a proposal for one not listed.

    Cohorts of other studies are kept. A sub-cohort implies its culture, so a culture chosen
    together with one of its sub-cohorts is not stored twice: `india:tamil` already says India.
    """
    paths = {cohort.path for cohort in cohorts}
    chosen = [
        cohort
        for cohort in cohorts
        if not any(
            other != cohort.path and cohort_path_contains(cohort.path, other) for other in paths
        )
    ]
    if not chosen and not proposal.strip():
        raise ValueError("Choose a cohort or propose one.")
    with transaction.atomic():
        # "None of these" with a proposal takes the rater out of the study's cohorts too.
        kept = rater.cohorts.exclude(pk__in=study.cohorts.values("pk"))
        rater.cohorts.set([*kept, *chosen])
        if proposal.strip():
            return cohort_proposal_submit(study=study, rater=rater, text=proposal)
    return None


class ProposalDecided(Exception):
    """A cohort proposal that an admin has already accepted or rejected."""


def cohort_proposal_accept(
    *, proposal: CohortProposal, path: str, name: str = "", now: datetime | None = None
) -> Cohort:
    """Accept a pending proposal as the cohort at `path` (made if missing) of its study.

    The rater who proposed it gets the cohort, so their pairs can come.
    """
    now = now or timezone.now()
    with transaction.atomic():
        cohort = cohort_ensure(path=path, name=name)
        claimed = CohortProposal.objects.filter(
            pk=proposal.pk, status=CohortProposal.Status.PENDING
        ).update(status=CohortProposal.Status.ACCEPTED, cohort=cohort, decided_at=now)
        if claimed != 1:
            raise ProposalDecided(str(proposal.pk))
        proposal.study.cohorts.add(cohort)
        if proposal.rater_id is not None:
            proposal.rater.cohorts.add(cohort)
    proposal.refresh_from_db()
    return cohort


def cohort_proposal_reject(*, proposal: CohortProposal, now: datetime | None = None) -> bool:
    """Reject a pending proposal; tell whether this call was the one that decided it."""
    claimed = CohortProposal.objects.filter(
        pk=proposal.pk, status=CohortProposal.Status.PENDING
    ).update(status=CohortProposal.Status.REJECTED, decided_at=now or timezone.now())
    return claimed == 1


def participation_demographics_set(
    *,
    participation: Participation,
    age_band: str | None = None,
    languages: Sequence[str] | None = None,
    years_lived: str | None = None,
) -> Participation:
    """Store the rater's answers to the optional questions; None is a question not answered.

    Every question asked is stored, answered or not, so the questions are not asked again:
    skipping them all stores only nulls.
    """
    participation.demographics = {
        "age_band": age_band or None,
        "languages": list(languages) if languages else None,
        "years_lived": years_lived or None,
    }
    participation.save(update_fields=["demographics"])
    return participation


def participation_quota_met(*, participation: Participation) -> bool:
    """Tell whether the rater has voted on as many regular pairs as the study asks."""
    regular = Vote.objects.filter(
        study_id=participation.study_id,
        rater_id=participation.rater_id,
        kind=AssignmentKind.PAIR,
    )
    return regular.count() >= participation.study.pairs_per_rater


def participation_complete(
    *, study: Study, rater: Rater, now: datetime | None = None
) -> Participation:
    """Mark the rater's participation completed, once; refuse while their quota is not met.

    Voting usually marks it first, as the last pair of the quota is stored; this is for a rater
    who reaches the completion page by another way, and it never hands out a code early.
    """
    participation = (
        Participation.objects.select_related("study")
        .filter(study=study, rater=rater, consented_at__isnull=False)
        .first()
    )
    if participation is None:
        raise EntryRefused(gettext("You have not started this study yet."), status=409)
    if participation.completed_at is None:
        if not participation_quota_met(participation=participation):
            raise EntryRefused(gettext("You have not finished this study yet."), status=409)
        Participation.objects.filter(pk=participation.pk, completed_at__isnull=True).update(
            completed_at=now or timezone.now()
        )
        participation.refresh_from_db(fields=["completed_at"])
    return participation


# Assignment: which new regular pair a rater is served, and the coverage that decides it.
#
# PairCoverage keeps, for every regular pair, one row per cohort the pair can count toward: the
# prompt's cohort, its ancestors, and the study's cohorts below it. `votes` on the row of cohort
# C counts the regular votes of raters in C or below it (an india:tamil vote counts in india
# too); `outgroup_votes` on the row of the prompt's root culture counts votes of raters from
# other cultures. A rater of cohort R is served from the rows of R, fewest votes first, through
# the index (study, cohort, votes, pair): a range read, never a scan of the study's pairs.
#
# Reservations are not counted in the rows: a live reservation is an assignment neither voted
# on, skipped nor expired (voting and skipping set expires_at to their time), so an expired one
# returns its pair to the pool with nothing to clean up. They are read, for the few pairs looked
# at, through the assignments' pair index. The check that a pair is below its target and the
# reservation that follows run under the pair's coverage row lock, taken with SKIP LOCKED: two
# raters never both take a pair's last place, and neither waits for the other.

ASSIGN_WINDOW = 32  # coverage rows read at a time
ASSIGN_ROUNDS = 3  # fresh looks when every pair seen was taken by concurrent raters


@dataclass(frozen=True)
class _Pool:
    """Coverage rows a rater's next pair may come from, and what an assignment from them counts.

    In-group: the rows of one of the rater's cohorts, by `votes`; the assignment counts toward
    that cohort, and reservations toward it or a cohort below it fill its places. Out-group: the
    rows of another root culture, by `outgroup_votes`; the assignment counts toward no cohort.
    """

    cohort_id: int
    counter: str
    counts_toward: int | None
    rater_path: str | None


@dataclass(frozen=True)
class _Candidate:
    pool: _Pool
    row_id: int
    pair_id: int
    load: int  # votes so far plus live reservations
    tie: float


def _reservations_live(*, pool: _Pool, now: datetime):
    """Return the live reservations that fill the pool's places on a pair once voted.

    Live: neither voted on, skipped nor expired (a vote and a skip set expires_at to their
    time). In-group, a reservation toward the pool's cohort or one below it fills a place, as
    its vote will count in the pool's row; out-group, one toward no cohort.
    """
    live = Assignment.objects.filter(
        kind=AssignmentKind.PAIR, expires_at__gt=now, skipped_at__isnull=True
    )
    if pool.rater_path is None:
        return live.filter(cohort__isnull=True)
    return live.filter(
        Q(cohort__path=pool.rater_path) | Q(cohort__path__startswith=pool.rater_path + ":")
    )


def _pool_window(
    *, study: Study, rater: Rater, pool: _Pool, now: datetime, unreserved: bool = False
) -> list[tuple[int, int, int, int]]:
    """Return the pool's least voted rows below target as (row, pair, votes, reserved).

    A range of the index (study, cohort, votes, pair), read in order and stopped at the
    window's end; per row, the pair's flag, the rater's own assignment and the live
    reservations are probed by primary key and the assignments' indexes. In SQL rather than
    the ORM: this runs for every page a rater sees, and compiling it cost more than running it.
    `unreserved` leaves out pairs with a live reservation that fills the pool's places.
    """
    if pool.rater_path is None:
        filling, filling_params = "live.cohort_id IS NULL", []
    else:
        filling = (
            f"live.cohort_id IN (SELECT id FROM {Cohort._meta.db_table} "
            "WHERE path = %s OR substr(path, 1, %s) = %s)"
        )
        subtree = pool.rater_path + ":"
        filling_params = [pool.rater_path, len(subtree), subtree]
    live = (
        f"FROM {Assignment._meta.db_table} live WHERE live.pair_id = coverage.pair_id "
        f"AND live.kind = %s AND live.expires_at > %s AND live.skipped_at IS NULL AND {filling}"
    )
    live_params = [AssignmentKind.PAIR.value, connection.ops.adapt_datetimefield_value(now)]
    live_params += filling_params
    counter = pool.counter  # a column name of ours, never input
    reserved = "0" if unreserved else f"(SELECT COUNT(*) {live})"
    sql = f"""
        SELECT coverage.id, coverage.pair_id, coverage.{counter}, {reserved}
        FROM {PairCoverage._meta.db_table} coverage
        JOIN {Pair._meta.db_table} pair ON pair.id = coverage.pair_id
        WHERE coverage.study_id = %s AND coverage.cohort_id = %s AND coverage.{counter} < %s
            AND NOT pair.is_attention_check
            AND NOT EXISTS (
                SELECT 1 FROM {Assignment._meta.db_table} seen
                WHERE seen.rater_id = %s AND seen.pair_id = coverage.pair_id
            )
            {f"AND NOT EXISTS (SELECT 1 {live})" if unreserved else ""}
        ORDER BY coverage.{counter}, coverage.pair_id
        LIMIT %s
    """
    params = [] if unreserved else list(live_params)
    params += [study.pk, pool.cohort_id, study.raters_per_pair, rater.pk]
    params += [*live_params, ASSIGN_WINDOW] if unreserved else [ASSIGN_WINDOW]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _pool_candidates(*, study: Study, rater: Rater, pool: _Pool, now: datetime) -> list[_Candidate]:
    """Return pairs of the pool below target, the least loaded among them, in two reads at most.

    The first read takes the pool's least voted rows with their live reservations. While
    raters are many, those rows are often reserved already and less loaded pairs lie further
    on: the second read then skips reserved pairs in the database, still in index order.
    """
    target = study.raters_per_pair
    window = _pool_window(study=study, rater=rater, pool=pool, now=now)
    candidates = [
        _Candidate(pool, row_id, pair_id, counted + reserved, random.random())
        for row_id, pair_id, counted, reserved in window
        if counted + reserved < target
    ]
    # Rows come in order of votes and reservations only add to them, so no row further on can
    # be less loaded than the last row's votes; an unreserved row further on may be less
    # loaded than every row read so far, though.
    if len(window) == ASSIGN_WINDOW and not (
        candidates and min(c.load for c in candidates) <= window[-1][2]
    ):
        unreserved = _pool_window(study=study, rater=rater, pool=pool, now=now, unreserved=True)
        candidates += [
            _Candidate(pool, row_id, pair_id, counted, random.random())
            for row_id, pair_id, counted, _ in unreserved
        ]
    return candidates


def _candidate_reserve(
    *, study: Study, rater: Rater, candidate: _Candidate, now: datetime
) -> Assignment | None:
    """Reserve the candidate pair if it is still below target; None if it is taken or full."""
    pool = candidate.pool
    try:
        with transaction.atomic():
            counted = (
                PairCoverage.objects.select_for_update(skip_locked=True)
                .filter(pk=candidate.row_id)
                .values_list(pool.counter, flat=True)
                .first()
            )
            if counted is None:
                return None  # another rater is reserving this pair right now
            # Counted after the lock, in a statement of its own: reservations committed by
            # whoever held the lock before are seen.
            reserved = _reservations_live(pool=pool, now=now).filter(pair_id=candidate.pair_id)
            if counted + reserved.count() >= study.raters_per_pair:
                return None
            return Assignment.objects.create(
                rater=rater,
                pair_id=candidate.pair_id,
                kind=AssignmentKind.PAIR,
                cohort_id=pool.counts_toward,
                shown_left=secrets.choice(Side.values),
                expires_at=now + timedelta(minutes=settings.POLYPHONY_ASSIGNMENT_MINUTES),
            )
    except IntegrityError:
        return None  # the same rater asked twice at once and the other request took it


def _pools_assign(
    *, study: Study, rater: Rater, pools: Sequence[_Pool], now: datetime
) -> Assignment | None:
    for _ in range(ASSIGN_ROUNDS):
        candidates = sorted(
            (
                candidate
                for pool in pools
                for candidate in _pool_candidates(study=study, rater=rater, pool=pool, now=now)
            ),
            key=lambda candidate: (candidate.load, candidate.tie),
        )
        if not candidates:
            return None
        tried: set[int] = set()
        for candidate in candidates:
            if candidate.pair_id in tried:
                continue
            tried.add(candidate.pair_id)
            assignment = _candidate_reserve(study=study, rater=rater, candidate=candidate, now=now)
            if assignment is not None:
                return assignment
    return None


def _outgroup_due(*, study: Study, rater: Rater) -> bool:
    """Say whether the next pair should come from another culture, to keep the study's share.

    A counter, not a coin: with a share of 0.25 the 4th, 8th, … regular pairs are out-group,
    so a rater's first pairs are always their own culture's.
    """
    share = study.outgroup_share
    if share <= 0:
        return False
    served = Assignment.objects.filter(
        rater=rater, pair__study=study, kind=AssignmentKind.PAIR
    ).aggregate(total=Count("pk"), outgroup=Count("pk", filter=Q(cohort__isnull=True)))
    return served["outgroup"] + 1 <= share * (served["total"] + 1) + 1e-9


def _outgroup_pools(*, study: Study, rater_paths: Sequence[str]) -> list[_Pool]:
    # Out-group means another root culture: a rater of india:tamil shares India with a prompt
    # about india:kerala, so that pair is neither theirs nor foreign and is served as neither.
    rater_roots = {cohort_path_ancestors(path)[0] for path in rater_paths}
    study_paths = list(study.cohorts.values_list("path", flat=True))
    roots = Cohort.objects.filter(depth=1).exclude(path__in=rater_roots)
    if study_paths:
        roots = roots.filter(path__in={cohort_path_ancestors(path)[0] for path in study_paths})
    return [
        _Pool(cohort_id=pk, counter="outgroup_votes", counts_toward=None, rater_path=None)
        for pk in roots.values_list("pk", flat=True)
    ]


def pair_assign(*, study: Study, rater: Rater, now: datetime | None = None) -> Assignment | None:
    """Reserve a new regular pair for the rater, or return None when none is left for them.

    In-group first: a pair whose prompt's cohort is one of the rater's cohorts, an ancestor of
    one, or below one, counted toward that rater cohort (Assignment.cohort); out-group pairs,
    from other root cultures and counted toward no cohort, only as far as the study's
    `outgroup_share`. The pair is one the rater was never served, not an attention check,
    below `raters_per_pair` for the cohort counting votes and live reservations, and the least
    loaded such pair. Open assignments and attention checks are the caller's business.
    """
    now = now or timezone.now()
    rater_cohorts = list(rater.cohorts.values_list("pk", "path"))
    if not rater_cohorts:
        return None
    in_group = [
        _Pool(cohort_id=pk, counter="votes", counts_toward=pk, rater_path=path)
        for pk, path in rater_cohorts
    ]
    choices = [in_group]
    if _outgroup_due(study=study, rater=rater):
        rater_paths = [path for _, path in rater_cohorts]
        choices.insert(0, _outgroup_pools(study=study, rater_paths=rater_paths))
    for pools in choices:
        assignment = _pools_assign(study=study, rater=rater, pools=pools, now=now)
        if assignment is not None:
            return assignment
    return None


def _coverage_paths(*, prompt_path: str, vote_paths: Iterable[str]) -> set[str]:
    # Every cohort that holds one of the vote's labels and can count toward the pair's prompt.
    return {
        ancestor
        for path in vote_paths
        for ancestor in cohort_path_ancestors(path)
        if cohort_path_contains(ancestor, prompt_path)
        or cohort_path_contains(prompt_path, ancestor)
    }


def pair_coverage_record(*, vote: Vote) -> None:
    """Count a regular vote in its pair's coverage, making the rows it needs.

    The vote adds one on the row of every cohort holding one of its labels, ancestors included,
    that is related to the prompt's cohort; a vote with no such label is an out-group vote and
    adds one to `outgroup_votes` on the row of the prompt's root culture. Call it in the vote's
    transaction, so a vote and its count are stored together or not at all.
    """
    prompt_path = (
        Pair.objects.filter(pk=vote.pair_id).values_list("prompt__cohort__path", flat=True).get()
    )
    paths = _coverage_paths(prompt_path=prompt_path, vote_paths=vote.cohort_paths)
    in_group = 1 if paths else 0
    if not paths:
        paths = {cohort_path_ancestors(prompt_path)[0]}
    coverage = PairCoverage._meta.db_table
    placeholders = ", ".join(["%s"] * len(paths))
    # One statement, rows taken in path order: concurrent votes on a pair lock its rows in the
    # same order, and a row made by one of them is counted, not duplicated, by the other.
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {coverage} (study_id, pair_id, cohort_id, votes, outgroup_votes)
            SELECT %s, %s, id, %s, %s FROM {Cohort._meta.db_table}
            WHERE path IN ({placeholders})
            ORDER BY path
            ON CONFLICT (pair_id, cohort_id) DO UPDATE
            SET votes = {coverage}.votes + excluded.votes,
                outgroup_votes = {coverage}.outgroup_votes + excluded.outgroup_votes
            """,
            [vote.study_id, vote.pair_id, in_group, 1 - in_group, *sorted(paths)],
        )


def pair_coverage_create(*, pairs: Iterable[Pair]) -> None:
    """Make the coverage rows of newly formed regular pairs; rows already there are kept.

    A pair gets a row for its prompt's cohort, each ancestor, and each of its study's cohorts
    below the prompt's, so every rater the pair is in-group for finds it among their rows.
    """
    pair_ids = [pair.pk for pair in pairs if not pair.is_attention_check]
    if not pair_ids:
        return
    formed = list(
        Pair.objects.filter(pk__in=pair_ids).values_list("pk", "study_id", "prompt__cohort__path")
    )
    study_paths: dict[int, list[str]] = {}
    for study_id, path in Study.cohorts.through.objects.filter(
        study_id__in={study_id for _, study_id, _ in formed}
    ).values_list("study_id", "cohort__path"):
        study_paths.setdefault(study_id, []).append(path)
    rows = []
    for pair_id, study_id, prompt_path in formed:
        below = [
            path
            for path in study_paths.get(study_id, ())
            if cohort_path_contains(prompt_path, path)
        ]
        for path in {*cohort_path_ancestors(prompt_path), *below}:
            rows.append((pair_id, study_id, path))
    cohort_ids = dict(
        Cohort.objects.filter(path__in={path for _, _, path in rows}).values_list("path", "pk")
    )
    PairCoverage.objects.bulk_create(
        [
            PairCoverage(pair_id=pair_id, study_id=study_id, cohort_id=cohort_ids[path])
            for pair_id, study_id, path in rows
        ],
        ignore_conflicts=True,
    )


def pair_coverage_backfill(*, study: Study, cohort: Cohort) -> int:
    """Give the study's pairs rows for a cohort added to the study after they were formed.

    Only pairs whose prompt targets an ancestor of the cohort lack them; others got the row
    when formed. Return the number of rows made.
    """
    ancestors = cohort_path_ancestors(cohort.path)[:-1]
    if not ancestors:
        return 0
    ancestor_ids = list(Cohort.objects.filter(path__in=ancestors).values_list("pk", flat=True))
    placeholders = ", ".join(["%s"] * len(ancestor_ids))
    prompts = Pair._meta.get_field("prompt").related_model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {PairCoverage._meta.db_table}
                (study_id, pair_id, cohort_id, votes, outgroup_votes)
            SELECT pair.study_id, pair.id, %s, 0, 0
            FROM {Pair._meta.db_table} pair
            JOIN {prompts} prompt ON prompt.id = pair.prompt_id
            WHERE pair.study_id = %s AND NOT pair.is_attention_check
                AND prompt.cohort_id IN ({placeholders})
            ON CONFLICT (pair_id, cohort_id) DO NOTHING
            """,
            [cohort.pk, study.pk, *ancestor_ids],
        )
        return cursor.rowcount
