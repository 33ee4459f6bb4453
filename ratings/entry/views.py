"""How a rater enters a study: sign-up, panel and invite links, consent, cohorts, questions.

`study_start` is the router: every step sends the rater back to it, and it sends them on to the
first step they have not done. Completion and stopping end a rater's visit.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import Resolver404, resolve, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods

from ratings.access import studies_for_researcher
from ratings.cohorts import cohort_path_ancestors
from ratings.entry import selectors, services, signup
from ratings.entry.forms import (
    CohortChoiceForm,
    DemographicsForm,
    PanelLinkForm,
    SignUpFinishForm,
    SignUpForm,
    cohort_name,
)
from ratings.models import CohortProposal, Participation, Study, StudyInvite
from webapp.client_ip import client_ip

# Raters who sign up or come from a panel sign in with Django's own model backend.
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def active_study(slug: str) -> Study:
    return get_object_or_404(Study, slug=slug, active=True)


def _refused(
    request: HttpRequest, reason: str, *, status: int, title: str = "", study: Study | None = None
) -> HttpResponse:
    return render(
        request,
        "ratings/entry_refused.html",
        {
            "title": title or gettext("This link does not work"),
            "reason": reason,
            "study": study,
            "hide_stop": True,
        },
        status=status,
    )


def _participation(study: Study, request: HttpRequest) -> Participation:
    """The rater's participation; a new one only where the study is open to sign-ups."""
    rater = services.rater_ensure(user=request.user)
    try:
        return services.participation_join(study=study, rater=rater)
    except services.EntryRefused as refusal:
        raise PermissionDenied(refusal.reason) from refusal


def _safe_url(request: HttpRequest, url: str) -> str:
    """Return the URL if it stays on this site, else nothing: never an open redirect."""
    if url and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return url
    return ""


def _safe_next(request: HttpRequest) -> str:
    return _safe_url(request, request.POST.get("next") or request.GET.get("next") or "")


def _study_of_next(next_url: str) -> Study | None:
    """Return the study a sign-up is on its way to, to name it on the page."""
    try:
        match = resolve(urlsplit(next_url).path)
    except Resolver404:
        return None
    if match.view_name == "ratings:start":
        return Study.objects.filter(slug=match.kwargs["slug"], active=True).first()
    if match.view_name == "ratings:invite":
        invite = StudyInvite.objects.filter(token=match.kwargs["token"]).first()
        return invite.study if invite else None
    return None


@login_required
def home(request: HttpRequest) -> HttpResponse:
    # Researchers see the results of the studies they were granted (active or not), and each
    # study once: under its results, not again among the studies to rate.
    researched = studies_for_researcher(user=request.user)
    studies = Study.objects.filter(active=True).exclude(pk__in=researched.values("pk"))
    return render(request, "ratings/home.html", {"studies": studies, "researched": researched})


@require_http_methods(["GET", "POST"])
def sign_up(request: HttpRequest) -> HttpResponse:
    """Ask for an email and mail it a link to finish signing up.

    Every valid address gets the same page, whether or not it has an account: the mail tells
    its owner which.
    """
    next_url = _safe_next(request)
    if request.user.is_authenticated:
        return redirect(next_url or reverse("ratings:home"))
    form = SignUpForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        try:
            signup.signup_mail_send(
                email=email,
                next_url=next_url,
                site_url=request.build_absolute_uri("/").rstrip("/"),
                address=client_ip(request),
            )
        except signup.SignUpMailFailed:
            return _refused(
                request,
                gettext("We could not send the email just now. Try again in a few minutes."),
                status=503,
                title=gettext("No email sent"),
            )
        return render(
            request,
            "registration/signup_sent.html",
            {"email": email, "hours": settings.POLYPHONY_SIGNUP_LINK_HOURS},
        )
    return render(
        request,
        "registration/signup.html",
        {"form": form, "next": next_url, "study": _study_of_next(next_url)},
    )


def _signup_link_used(request: HttpRequest, next_url: str) -> HttpResponse:
    return render(request, "registration/signup_link_used.html", {"next": next_url}, status=409)


@require_http_methods(["GET", "POST"])
def sign_up_finish(request: HttpRequest, token: str) -> HttpResponse:
    """Open the emailed link: choose a password, get an account, sign in, go on to `next`."""
    try:
        link = signup.signup_link_read(token=token)
    except signup.SignUpLinkRefused as refusal:
        link = refusal.link
        return render(
            request,
            "registration/signup_link_refused.html",
            {
                "expired": refusal.expired,
                "email": link.email if link else "",
                "next": _safe_url(request, link.next_url) if link else "",
            },
            status=410 if refusal.expired else 400,
        )
    next_url = _safe_url(request, link.next_url)
    if selectors.email_has_account(email=link.email):
        return _signup_link_used(request, next_url)
    form = SignUpFinishForm(request.POST if request.method == "POST" else None, email=link.email)
    if request.method == "POST" and form.is_valid():
        try:
            rater = services.rater_sign_up(
                email=link.email, password=form.cleaned_data["password1"]
            )
        except services.EmailTaken:
            return _signup_link_used(request, next_url)
        login(request, rater.user, backend=MODEL_BACKEND)
        return redirect(next_url or reverse("ratings:home"))
    return render(
        request,
        "registration/signup_finish.html",
        {"form": form, "email": link.email, "study": _study_of_next(next_url)},
    )


class PasswordReset(auth_views.PasswordResetView):
    """Django's password reset, which answers every address alike; its mails count toward the
    same hourly limits as sign-up's, and past them it answers the same and sends nothing."""

    email_template_name = "registration/password_reset_email.txt"

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        if signup.account_mail_allowed(
            email=form.cleaned_data["email"], address=client_ip(self.request)
        ):
            return super().form_valid(form)
        return HttpResponseRedirect(self.get_success_url())


def invite(request: HttpRequest, token: str) -> HttpResponse:
    """Open an admin's invite link: sign up or in, join the study (one use), go to it."""
    try:
        study_invite = services.invite_check(token=token)
    except services.EntryRefused as refusal:
        return _refused(request, refusal.reason, status=refusal.status)
    if not request.user.is_authenticated:
        return redirect(f"{reverse('signup')}?{urlencode({'next': request.path})}")
    try:
        services.invite_redeem(invite=study_invite, rater=services.rater_ensure(user=request.user))
    except services.EntryRefused as refusal:
        return _refused(request, refusal.reason, status=refusal.status)
    return redirect("ratings:start", slug=study_invite.study.slug)


PANEL_PENDING = "polyphony_panel_pending"


def _panel_entry(request: HttpRequest, study: Study) -> HttpResponse:
    form = PanelLinkForm.from_query(request.GET, study=study)
    if not form.is_valid():
        # Never echo the values: a panel id must not appear on any page.
        return _refused(
            request,
            gettext(
                "The link you followed lacks your panel id, or it is not one we can read. "
                "Go back to the panel and open the study from there again."
            ),
            status=400,
            study=study,
        )
    ids = {
        "panel_id": form.cleaned_data["rater_id"],
        "panel_study_id": form.cleaned_data["study_id"],
        "panel_session_id": form.cleaned_data["session_id"],
    }
    try:
        services.panel_link_check(
            study=study, panel_id=ids["panel_id"], panel_study_id=ids["panel_study_id"]
        )
    except services.EntryRefused as refusal:
        return _refused(request, refusal.reason, status=refusal.status, study=study)
    user = request.user
    if (
        user.is_authenticated
        and getattr(getattr(user, "rater", None), "panel_id", None) != (ids["panel_id"])
    ):
        # Someone else is signed in here (a researcher, another rater): ask, never switch.
        # The ids wait in the session, so the page shows none of them.
        request.session[PANEL_PENDING] = {"study": study.slug, **ids}
        return redirect("ratings:panel_switch", slug=study.slug)
    return _panel_enter(request, study, ids)


def _panel_enter(request: HttpRequest, study: Study, ids: dict) -> HttpResponse:
    try:
        services.panel_rater_rate_check(
            study=study, panel_id=ids["panel_id"], address=client_ip(request)
        )
        participation = services.participation_from_panel(study=study, **ids)
    except services.EntryRefused as refusal:
        return _refused(request, refusal.reason, status=refusal.status, study=study)
    user = participation.rater.user
    if request.user.pk != user.pk:
        login(request, user, backend=MODEL_BACKEND)
    # Redirect to the bare study URL, so the panel id leaves the address bar and history.
    return redirect("ratings:start", slug=study.slug)


@require_http_methods(["GET", "POST"])
def panel_switch(request: HttpRequest, slug: str) -> HttpResponse:
    """Ask someone signed in who opened a panel link whether to sign out and go on as the
    panel's participant; only a POST that says so switches."""
    study = active_study(slug)
    pending = request.session.get(PANEL_PENDING)
    if not pending or pending.get("study") != study.slug:
        return redirect("ratings:start", slug=study.slug)
    if request.method == "POST":
        if request.POST.get("decision") != "switch":
            del request.session[PANEL_PENDING]
            return redirect("ratings:home")
        ids = {key: pending[key] for key in ("panel_id", "panel_study_id", "panel_session_id")}
        logout(request)
        return _panel_enter(request, study, ids)
    return render(
        request,
        "ratings/panel_switch.html",
        {"study": study, "signed_in_as": request.user.get_username(), "hide_stop": True},
    )


def study_start(request: HttpRequest, slug: str) -> HttpResponse:
    """Send the rater to the first step they have not done.

    Panel link, sign-in, consent, cohorts, the optional questions, then pairs.
    """
    study = active_study(slug)
    if PanelLinkForm.present_in(request.GET, study=study):
        return _panel_entry(request, study)
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    try:
        participation = _participation(study, request)
    except PermissionDenied as refusal:
        return _refused(request, str(refusal), status=403, study=study)
    rater = participation.rater
    if participation.consented_at is None:
        return redirect("ratings:consent", slug=study.slug)
    if participation.completed_at is not None:
        return redirect("ratings:complete", slug=study.slug)
    if not selectors.rater_has_study_cohort(study=study, rater=rater):
        proposal = (
            CohortProposal.objects.filter(study=study, rater=rater).order_by("-created_at").first()
        )
        if proposal is not None and proposal.status == CohortProposal.Status.PENDING:
            return render(
                request, "ratings/cohort_pending.html", {"study": study, "proposal": proposal}
            )
        return redirect("ratings:cohorts", slug=study.slug)
    if study.ask_demographics and not participation.demographics:
        return redirect("ratings:demographics", slug=study.slug)
    return redirect("ratings:rate", slug=study.slug)


@login_required
@require_http_methods(["GET", "POST"])
def consent(request: HttpRequest, slug: str) -> HttpResponse:
    study = active_study(slug)
    participation = _participation(study, request)
    if participation.consented_at is not None:
        return redirect("ratings:start", slug=study.slug)
    decision = request.POST.get("decision") if request.method == "POST" else None
    if decision == "accept":
        services.participation_consent(study=study, rater=participation.rater)
        return redirect("ratings:start", slug=study.slug)
    if decision == "decline":
        if services.consent_decline(study=study, rater=participation.rater):
            logout(request)  # the panel rater made for this visit is gone
        return render(request, "ratings/declined.html", {"study": study, "hide_stop": True})
    return render(request, "ratings/consent.html", {"study": study})


@login_required
@require_http_methods(["GET", "POST"])
def cohorts(request: HttpRequest, slug: str) -> HttpResponse:
    study = active_study(slug)
    participation = _participation(study, request)
    if participation.consented_at is None:
        return redirect("ratings:start", slug=study.slug)
    rater = participation.rater
    # A sub-culture implies its culture, so a rater of india:tamil sees both ticked.
    implied = {path for held in rater.cohort_paths() for path in cohort_path_ancestors(held)}
    form = CohortChoiceForm(
        request.POST if request.method == "POST" else None,
        study=study,
        initial={"cohorts": list(study.cohorts.filter(path__in=implied))},
    )
    if request.method == "POST" and form.is_valid():
        services.rater_cohorts_choose(
            study=study,
            rater=rater,
            cohorts=list(form.cleaned_data["cohorts"]),
            proposal=form.cleaned_data["proposal"],
        )
        return redirect("ratings:start", slug=study.slug)
    rejected = (
        CohortProposal.objects.filter(
            study=study, rater=rater, status=CohortProposal.Status.REJECTED
        )
        .order_by("-decided_at")
        .first()
    )
    return render(
        request, "ratings/cohorts.html", {"study": study, "form": form, "rejected": rejected}
    )


@login_required
@require_http_methods(["GET", "POST"])
def demographics(request: HttpRequest, slug: str) -> HttpResponse:
    study = active_study(slug)
    participation = _participation(study, request)
    if participation.consented_at is None or not study.ask_demographics:
        return redirect("ratings:start", slug=study.slug)
    if request.method == "POST" and "skip" in request.POST:
        services.participation_demographics_set(participation=participation)
        return redirect("ratings:start", slug=study.slug)
    form = DemographicsForm(
        request.POST if request.method == "POST" else None,
        study=study,
        cultures=[
            cohort_name(cohort, study=study)
            for cohort in participation.rater.cohorts.order_by("path")
        ],
    )
    if request.method == "POST" and form.is_valid():
        services.participation_demographics_set(
            participation=participation,
            age_band=form.cleaned_data["age_band"],
            languages=form.cleaned_data["languages"],
            years_lived=form.cleaned_data["years_lived"],
        )
        return redirect("ratings:start", slug=study.slug)
    return render(request, "ratings/demographics.html", {"study": study, "form": form})


@login_required
def complete(request: HttpRequest, slug: str) -> HttpResponse:
    """Show the study's completion code, or send the rater on to the panel's completion URL."""
    # A study closed after the rater finished still owes them their code.
    study = get_object_or_404(Study, slug=slug)
    try:
        services.participation_complete(study=study, rater=services.rater_ensure(user=request.user))
    except services.EntryRefused as refusal:
        # 409: not started, or not finished yet; the page says which.
        return render(
            request,
            "ratings/not_finished.html",
            {"study": study, "reason": refusal.reason},
            status=refusal.status,
        )
    if study.completion_url:
        return redirect(study.completion_url)
    return render(request, "ratings/complete.html", {"study": study, "hide_stop": True})


@require_http_methods(["GET", "POST"])
def stop(request: HttpRequest, slug: str) -> HttpResponse:
    """Let a rater stop at any time: ask once, then sign them out with thanks."""
    study = get_object_or_404(Study, slug=slug)
    route = selectors.return_route(study=study, user=request.user)  # before signing out
    if request.method == "POST" or not request.user.is_authenticated:
        logout(request)
        return render(request, "ratings/stopped.html", {"study": study, "route": route})
    return render(request, "ratings/stop.html", {"study": study, "hide_stop": True, "route": route})
