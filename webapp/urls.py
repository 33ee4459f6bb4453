from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from ratings import urls as ratings_urls
from ratings.entry import views as entry_views
from ratings.entry.forms import SignInForm
from ratings.exports import urls as exports_urls
from webapp.views import favicon, healthz, media

urlpatterns = [
    path("admin/", admin.site.urls),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(authentication_form=SignInForm),
        name="login",
    ),
    path("accounts/signup/", entry_views.sign_up, name="signup"),
    path("accounts/signup/<str:token>/", entry_views.sign_up_finish, name="signup_finish"),
    # Django's password reset, with Polyphony's pages (templates/registration/password_reset_*).
    path("accounts/password_reset/", entry_views.PasswordReset.as_view(), name="password_reset"),
    path(
        "accounts/password_reset/done/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "accounts/password_reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "accounts/password_reset/complete/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    # Local media; with S3 the storage hands out its own URLs and this route goes unused.
    path("media/<path:path>", media, name="media"),
    # Staff pages under batches/ and the staff API under api/v1/.
    path("", include("generation.urls")),
    # The researchers' download links join the ratings namespace (ratings:export, ...).
    path("", include((ratings_urls.urlpatterns + exports_urls.download_urlpatterns, "ratings"))),
    # The researchers' API, and the OpenAPI schema of every API (with a page to browse it).
    path("api/v1/", include("ratings.exports.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    # The split view serves its script from a URL, not inline: the CSP allows no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api_schema"), name="api_docs"),
]

# A trivial view: liveness for a load balancer, and the ceiling bench/votes.py measures against.
urlpatterns += [path("healthz", healthz, name="healthz")]
urlpatterns += [path("favicon.ico", favicon, name="favicon")]
