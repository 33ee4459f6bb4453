"""Services of a rater's entry into a study: sign-up, panel links, invites, consent,
cohorts chosen or proposed, the optional questions, and completion.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext

from ratings.cohorts import cohort_path_contains
from ratings.models import (
    AssignmentKind,
    Cohort,
    CohortProposal,
    ConsentDecline,
    EntryWindow,
    Participation,
    Rater,
    Study,
    StudyInvite,
    Vote,
)
from ratings.studies import cohort_ensure

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


def rater_ensure(*, user: AbstractBaseUser) -> Rater:
    """Return the user's rater profile, creating an empty one on first use."""
    rater, _ = Rater.objects.get_or_create(user=user)
    return rater


def participation_ensure(*, study: Study, rater: Rater) -> Participation:
    """Return the rater's participation in the study, creating it on first use."""
    participation, _ = Participation.objects.get_or_create(study=study, rater=rater)
    return participation


def _participation_new(*, study: Study, rater: Rater) -> tuple[Participation, bool]:
    """Return the rater's participation, creating it unless the study's cap of raters is met.

    The study's row is locked while its raters are counted, so two joins cannot both take
    the last place.
    """
    existing = Participation.objects.filter(study=study, rater=rater).first()
    if existing is not None:
        return existing, False
    with transaction.atomic():
        if study.max_raters is not None:
            Study.objects.select_for_update().filter(pk=study.pk).first()
            if Participation.objects.filter(study=study).count() >= study.max_raters:
                raise EntryRefused(
                    gettext("This study has all the raters it needs. Thank you for your interest."),
                    status=403,
                )
        return Participation.objects.get_or_create(study=study, rater=rater)


def participation_join(*, study: Study, rater: Rater) -> Participation:
    """Return the rater's participation; a new one only where the study is open to sign-ups.

    Otherwise raters come by an invite (invite_redeem) or a panel link
    (participation_from_panel). Raises EntryRefused.
    """
    existing = Participation.objects.filter(study=study, rater=rater).first()
    if existing is not None:
        return existing
    if not study.open_to_signups:
        raise EntryRefused(
            gettext(
                "This study takes raters by invitation or from its panel only. Use the link "
                "you were given."
            ),
            status=403,
        )
    return _participation_new(study=study, rater=rater)[0]


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


class EntryRefused(Exception):
    """A way into a study that cannot be taken; `status` is the HTTP status that says why."""

    def __init__(self, reason: str, *, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class EmailTaken(Exception):
    """An email address that already belongs to an account, whatever its letter case."""


def panel_link_check(*, study: Study, panel_id: str, panel_study_id: str) -> None:
    """Refuse a panel link for another panel study, or with a participant id of another form."""
    if study.panel_study_id and panel_study_id != study.panel_study_id:
        raise EntryRefused(
            gettext(
                "This link is not the study's link on your panel. Go back to the panel and "
                "open the study from there again."
            ),
            status=400,
        )
    if study.panel_id_regex and not re.fullmatch(study.panel_id_regex, panel_id):
        raise EntryRefused(
            gettext(
                "The link you followed lacks your panel id, or it is not one we can read. "
                "Go back to the panel and open the study from there again."
            ),
            status=400,
        )


def entry_window_count(key: str, seconds: int) -> int:
    """Count one more event under `key` in the current window of `seconds`; return the count.

    One atomic upsert in PostgreSQL: every process and server counts together, and two
    events at once are two counts.
    """
    now = time.time()
    start = now - now % seconds
    window_start = datetime.fromtimestamp(start, tz=UTC)
    expires_at = datetime.fromtimestamp(start + seconds, tz=UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO ratings_entrywindow (key, window_start, expires_at, count)
            VALUES (%s, %s, %s, 1)
            ON CONFLICT (key, window_start)
            DO UPDATE SET count = ratings_entrywindow.count + 1
            RETURNING count
            """,
            [key[:120], window_start, expires_at],
        )
        return cursor.fetchone()[0]


def entry_key_digest(value: str) -> str:
    """A keyed hash of a client address or an email: what the entry counts keep, never the
    value itself."""
    return hashlib.sha256(f"{settings.SECRET_KEY}:{value}".encode()).hexdigest()[:32]


def entry_windows_purge(*, now: datetime | None = None) -> int:
    """Delete the counts of windows that have passed; return how many rows went."""
    deleted, _ = EntryWindow.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted


def panel_rater_rate_check(*, study: Study, panel_id: str, address: str | None) -> None:
    """Refuse a new panel rater past the limits per address and per study (429).

    Only a panel id never seen counts: a rater coming back resumes whatever the limits. The
    address is kept only as a keyed hash, for the window (see EntryWindow).
    """
    if Rater.objects.filter(panel_id=panel_id).exists():
        return
    per_address = settings.POLYPHONY_PANEL_NEW_RATERS_PER_ADDRESS_PER_HOUR
    per_study = settings.POLYPHONY_PANEL_NEW_RATERS_PER_STUDY_PER_MINUTE
    digest = entry_key_digest(str(address))
    if per_address and entry_window_count(f"address:{digest}", 3600) > per_address:
        raise EntryRefused(
            gettext("Too many new participants from your network. Try again later."), status=429
        )
    if per_study and entry_window_count(f"study:{study.pk}", 60) > per_study:
        raise EntryRefused(
            gettext("Many people are joining right now. Try again in a minute."), status=429
        )


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
    """Return the panel rater's participation in the study, recording the panel's latest ids.

    Raises EntryRefused when the study's cap of raters is met for a new one.
    """
    rater = rater_from_panel(panel_id=panel_id)
    participation, _ = _participation_new(study=study, rater=rater)
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
        participation, created = _participation_new(study=invite.study, rater=rater)
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
