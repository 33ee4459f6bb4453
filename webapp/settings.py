"""Polyphony settings, read from the environment.

Embedded defaults run the demo with no system servers: the entry points (webapp/bootstrap.py)
start the embedded PostgreSQL under var/pgdata when DATABASE_URL is unset, and the Celery
broker is a folder under var/; production points DATABASE_URL at its PostgreSQL and
CELERY_BROKER_URL at Redis. One SQL dialect everywhere: PostgreSQL.
Bad values are collected in POLYPHONY_SETTINGS_ERRORS and reported as system checks
(webapp/checks.py), so a misconfigured start stops with a message rather than a traceback.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE

from webapp import quiet
from webapp.env import EnvReader
from webapp.languages import catalogue_languages

BASE_DIR = Path(__file__).resolve().parent.parent
env = EnvReader()

VAR_DIR = Path(env.str("POLYPHONY_VAR_DIR") or BASE_DIR / "var")

DEBUG = env.bool("DEBUG", False)

SECRET_KEY = env.str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        env.error("SECRET_KEY", "SECRET_KEY must be set when DEBUG is off.")
    # A throwaway key lets Django load far enough to report the check above; with DEBUG on it
    # is the development key, and sessions simply end when the process restarts.
    SECRET_KEY = "insecure-" + secrets.token_urlsafe(32)
elif len(SECRET_KEY) < 32 and not DEBUG:
    env.error("SECRET_KEY", "SECRET_KEY must be at least 32 characters long.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # Before the admin: the study's own texts in each language, edited side by side.
    "modeltranslation",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # Lockout after repeated failed sign-ins, on every login form (the site's and the admin's).
    "axes",
    "csp",
    "webapp",
    "ratings",
    "generation",
]

MIDDLEWARE = [
    # Bodies refused by their declared size before anything reads them (webapp/middleware.py).
    "webapp.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files from gunicorn itself, compressed and cached forever under hashed names.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # A database outage answers 503 with Retry-After, not a 500 page.
    "webapp.middleware.DatabaseUnavailableMiddleware",
    # Last, as django-axes asks: it turns a lockout into its answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: PostgreSQL, always. manage.py, the worker and the WSGI app set DATABASE_URL to the
# embedded server when it is unset (webapp/bootstrap.py); anything else must set it.
DATABASE_URL = env.str("DATABASE_URL")
# The dummy backend refuses every query, so nothing runs against a database we guessed.
DATABASES = {"default": {"ENGINE": "django.db.backends.dummy"}}
if not DATABASE_URL:
    env.error(
        "DATABASE_URL",
        "DATABASE_URL is not set. manage.py, the Celery worker and the WSGI app start the "
        "embedded PostgreSQL under var/pgdata when it is unset; anything else must set it "
        "(postgres://user:password@host:5432/name)."
        + (
            f" The embedded server did not start: {env.str('POLYPHONY_EMBEDDED_DB_ERROR')}"
            if env.str("POLYPHONY_EMBEDDED_DB_ERROR")
            else ""
        ),
    )
else:
    try:
        DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    except Exception as exc:  # dj_database_url raises several types for a malformed URL
        env.error("DATABASE_URL", f"DATABASE_URL is not a database URL Polyphony can use: {exc}")
    else:
        if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
            env.error(
                "DATABASE_URL",
                "DATABASE_URL must name a PostgreSQL database (postgres://…): Polyphony's SQL "
                f"is PostgreSQL's, and {DATABASE_URL.split(':', 1)[0]}:// is not supported.",
            )
            DATABASES = {"default": {"ENGINE": "django.db.backends.dummy"}}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
FORMS_URLFIELD_ASSUME_HTTPS = True  # Django 6's default; completion URLs are https

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes checks every authenticate() that carries a request (every login form does) and
# locks a user name at one address out after POLYPHONY_LOGIN_FAILURE_LIMIT failures, for
# POLYPHONY_LOGIN_COOLOFF_MINUTES; a success before that resets the count.
AUTHENTICATION_BACKENDS = [
    "webapp.auth_backends.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("POLYPHONY_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env.int("POLYPHONY_LOGIN_COOLOFF_MINUTES", 30, minimum=1) / 60
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
# No log of successful sign-ins: it would keep every rater's address and browser.
AXES_DISABLE_ACCESS_LOG = True
# Behind a proxy: how many proxies append to X-Forwarded-For (0: the peer's address is used).
POLYPHONY_PROXY_COUNT = env.int("POLYPHONY_PROXY_COUNT", 0, minimum=0)
AXES_CLIENT_IP_CALLABLE = "webapp.client_ip.client_ip"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "ratings:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
# The languages a study's own texts (consent, questions, cohort names, prompts) are written and
# translated in: a column each (django-modeltranslation), so adding one needs makemigrations.
TEXT_LANGUAGES = [("en", "English"), ("es", "Español")]
MODELTRANSLATION_LANGUAGES = tuple(code for code, _ in TEXT_LANGUAGES)
# Rater pages are translated; admins and researchers work in English. The interface's
# languages are those above and every language with a compiled catalogue in locale/
# (webapp/languages.py): a third one is one translation file.
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGES = [
    *TEXT_LANGUAGES,
    *catalogue_languages(LOCALE_PATHS[0], known={code for code, _ in TEXT_LANGUAGES}),
]
# The study's texts (consent, questions, cohort names, prompts) per language: a missing
# translation falls back to the study's own language (Study.language, ratings/texts.py), then
# to the default language's text.
MODELTRANSLATION_DEFAULT_LANGUAGE = LANGUAGE_CODE
MODELTRANSLATION_FALLBACK_LANGUAGES = (LANGUAGE_CODE,)
# A text created in any language is the default language's text too, until translated.
MODELTRANSLATION_AUTO_POPULATE = "default"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
POLYPHONY_STATIC_MANIFEST = env.bool("POLYPHONY_STATIC_MANIFEST", not DEBUG)
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]

# Media: local files under var/media, or S3-compatible storage when S3_BUCKET is set.
MEDIA_ROOT = Path(env.str("MEDIA_ROOT") or VAR_DIR / "media")
MEDIA_URL = env.str("MEDIA_URL") or "/media/"
S3_BUCKET = env.str("S3_BUCKET")
if S3_BUCKET:
    _media_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env.str("S3_ENDPOINT_URL") or None,
            "region_name": env.str("S3_REGION") or None,
            "access_key": env.str("S3_ACCESS_KEY_ID") or None,
            "secret_key": env.str("S3_SECRET_ACCESS_KEY") or None,
            "querystring_auth": env.bool("S3_QUERYSTRING_AUTH", True),
            # Names are content hashes: an existing name already holds the same bytes.
            "file_overwrite": True,
            "default_acl": None,
        },
    }
else:
    _media_storage = {
        "BACKEND": "generation.storage.ContentAddressedFileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT, "base_url": MEDIA_URL},
    }
STORAGES = {
    "default": _media_storage,
    # With DEBUG off, names carry a hash of the content and `collectstatic` must have run
    # (the deployment steps say so). Tests turn it off, as Django's docs advise, since they
    # run no collectstatic; with DEBUG on, plain names.
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if POLYPHONY_STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Celery: kombu's filesystem transport under var/ unless CELERY_BROKER_URL says otherwise.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL") or "filesystem://"
BROKER_DIR = VAR_DIR / "broker"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ROUTES = {
    "generation.tasks.render_prompt": {"queue": "gpu"},
    "generation.tasks.requeue_stuck_images": {"queue": "default"},
    "ratings.tasks.scores_compute_task": {"queue": "default"},
    "ratings.entry.tasks.entry_records_purge_task": {"queue": "default"},
}
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SOFT_TIME_LIMIT = env.int("POLYPHONY_TASK_SOFT_TIME_LIMIT", 1800, minimum=1)
CELERY_TASK_TIME_LIMIT = env.int(
    "POLYPHONY_TASK_HARD_TIME_LIMIT", CELERY_TASK_SOFT_TIME_LIMIT + 120, minimum=1
)
CELERY_WORKER_MAX_TASKS_PER_CHILD = env.int("POLYPHONY_WORKER_MAX_TASKS_PER_CHILD", 200, minimum=1)
# A task redelivered while it still runs would render twice: the broker's visibility timeout
# must outlast the hard time limit of the longest task (checked as polyphony.E006).
POLYPHONY_BROKER_VISIBILITY_TIMEOUT = env.int(
    "POLYPHONY_BROKER_VISIBILITY_TIMEOUT", CELERY_TASK_TIME_LIMIT + 600, minimum=1
)
# Render leases: a worker renews its claim every third of POLYPHONY_RENDER_LEASE_SECONDS;
# beat's requeue (every POLYPHONY_STUCK_CHECK_SECONDS, on the default queue) sends an image
# whose lease lapsed back to the queue, so a render whose worker died, however, restarts
# within lease + check (150 s by default). A queued image whose message was sent more than
# POLYPHONY_REQUEUE_QUEUED_SECONDS ago, with no render message waiting, is sent again.
POLYPHONY_RENDER_LEASE_SECONDS = env.int("POLYPHONY_RENDER_LEASE_SECONDS", 120, minimum=3)
POLYPHONY_REQUEUE_QUEUED_SECONDS = env.int("POLYPHONY_REQUEUE_QUEUED_SECONDS", 120, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "requeue-stuck-images": {
        "task": "generation.tasks.requeue_stuck_images",
        "schedule": env.int("POLYPHONY_STUCK_CHECK_SECONDS", 30, minimum=1),
    },
    # The rate limits' counts of windows that have passed (hashed addresses among them) and
    # the sign-up links that have expired (with their emails).
    "purge-entry-records": {
        "task": "ratings.entry.tasks.entry_records_purge_task",
        "schedule": 600,
    },
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": POLYPHONY_BROKER_VISIBILITY_TIMEOUT}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes a missing or bad credential a 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Polyphony API",
    "DESCRIPTION": "Staff: prompt batch progress. Researchers: studies, split-aware scores, "
    "the cohort split report, and exports with their dataset cards. Session or "
    "`Authorization: Token KEY`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs page's JavaScript and CSS come from this server (drf-spectacular-sidecar).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "webapp.schema.document_refusals",
    ],
}

# Polyphony's own settings.
POLYPHONY_TINY_MODEL_DIR = Path(env.str("POLYPHONY_TINY_MODEL_DIR") or VAR_DIR / "models" / "tiny")
POLYPHONY_RENDER_DEVICE = env.str("POLYPHONY_RENDER_DEVICE")  # "" = CUDA, else MPS, else CPU
POLYPHONY_ASSIGNMENT_MINUTES = env.int("POLYPHONY_ASSIGNMENT_MINUTES", 20, minimum=1)
# Seeds of one prompt per task, and per pipeline call (0: chosen by the device's memory).
POLYPHONY_SEEDS_PER_TASK = env.int("POLYPHONY_SEEDS_PER_TASK", 4, minimum=1)
POLYPHONY_RENDER_BATCH_SIZE = env.int("POLYPHONY_RENDER_BATCH_SIZE", 0, minimum=0)
# Scores are recomputed this many seconds after the first new vote (more votes meanwhile wait
# for the same recomputation); 0 recomputes after every vote's commit.
POLYPHONY_SCORES_DEBOUNCE_SECONDS = env.int("POLYPHONY_SCORES_DEBOUNCE_SECONDS", 60, minimum=0)

# Sessions: with a shared cache (CACHE_URL, Redis) a session is read from it and written
# through to the database, so a signed-in request reads no session row; without one, from the
# database. Never a per-process cache: a session ended in one process would live on in another.
CACHE_URL = env.str("CACHE_URL")
if CACHE_URL and not CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    env.error("CACHE_URL", f"CACHE_URL must be a redis:// URL, got {CACHE_URL!r}.")
elif CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "polyphony",
        }
    }
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", True)

# HTTPS, from the environment: a deployment behind a TLS-terminating proxy sets
# SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto (the header its proxy sets, and strips from
# clients); SECURE_SSL_REDIRECT and HSTS default on with DEBUG off.
_proxy_header = env.str("SECURE_PROXY_SSL_HEADER")
if _proxy_header:
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + _proxy_header.upper().replace("-", "_"),
        env.str("SECURE_PROXY_SSL_VALUE") or "https",
    )
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", not DEBUG)
# The health check answers over plain HTTP too, for a load balancer inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Content-Security-Policy (django-csp): scripts and styles from this server only, inline
# scripts only with the response's nonce; images also from the media host (S3) when set.
# (No base-uri: its name would put the word "base" in every rater's response headers, which
# the blinding test forbids; with default-src 'self' and nonces a <base> tag gains little.)
_media_origin = env.str("CSP_MEDIA_ORIGIN")
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:", *([_media_origin] if _media_origin else [])],
        "object-src": [NONE],
        "frame-ancestors": [NONE],
        # Panel completion URLs are followed by redirects after a form post.
        "form-action": [SELF, *env.list("CSP_FORM_ACTION", [])],
    }
}

# New panel raters (a panel id never seen) per client address per hour, and per study per
# minute; 0 turns a limit off. Counted in PostgreSQL (ratings.EntryWindow), so every process
# and server counts together.
POLYPHONY_PANEL_NEW_RATERS_PER_ADDRESS_PER_HOUR = env.int(
    "POLYPHONY_PANEL_NEW_RATERS_PER_ADDRESS_PER_HOUR", 10, minimum=0
)
POLYPHONY_PANEL_NEW_RATERS_PER_STUDY_PER_MINUTE = env.int(
    "POLYPHONY_PANEL_NEW_RATERS_PER_STUDY_PER_MINUTE", 60, minimum=0
)

# Sign-up is verified by email: the emailed link to finish it holds for this many hours. Sign-up
# mails per client address and per email address per hour; 0 turns a limit off. Past a limit the
# page answers as if a mail was sent, and sends none. Counted like the panel limits above.
POLYPHONY_SIGNUP_LINK_HOURS = env.int("POLYPHONY_SIGNUP_LINK_HOURS", 24, minimum=1)
POLYPHONY_SIGNUP_MAILS_PER_ADDRESS_PER_HOUR = env.int(
    "POLYPHONY_SIGNUP_MAILS_PER_ADDRESS_PER_HOUR", 20, minimum=0
)
POLYPHONY_SIGNUP_MAILS_PER_EMAIL_PER_HOUR = env.int(
    "POLYPHONY_SIGNUP_MAILS_PER_EMAIL_PER_HOUR", 3, minimum=0
)

# Email (sign-up links, password resets): SMTP from the environment. With DEBUG on and neither
# EMAIL_BACKEND nor EMAIL_HOST set, mails are written as files under var/mail/, so the demo's
# sign-up works offline. Mail is sent while the page waits: EMAIL_TIMEOUT bounds the wait.
EMAIL_HOST = env.str("EMAIL_HOST") or "localhost"
EMAIL_PORT = env.int("EMAIL_PORT", 25, minimum=1)
if EMAIL_PORT > 65535:
    env.error("EMAIL_PORT", f"EMAIL_PORT must be a port number (1 to 65535), got {EMAIL_PORT}.")
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL") or "Polyphony <polyphony@localhost>"
EMAIL_BACKEND = env.str("EMAIL_BACKEND")
if not EMAIL_BACKEND and DEBUG and not env.str("EMAIL_HOST"):
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = VAR_DIR / "mail"
elif not EMAIL_BACKEND:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
elif "." not in EMAIL_BACKEND:
    env.error(
        "EMAIL_BACKEND",
        "EMAIL_BACKEND must be the dotted path of a Django email backend, e.g. "
        f"django.core.mail.backends.smtp.EmailBackend, got {EMAIL_BACKEND!r}.",
    )

# Request bodies larger than this are refused (413) before anything reads them.
POLYPHONY_MAX_REQUEST_BYTES = env.int("POLYPHONY_MAX_REQUEST_BYTES", 20 * 1024 * 1024, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = min(POLYPHONY_MAX_REQUEST_BYTES, 20 * 1024 * 1024)
# What a 503 (the database unavailable) tells the client to wait before retrying.
POLYPHONY_RETRY_AFTER_SECONDS = env.int("POLYPHONY_RETRY_AFTER_SECONDS", 2, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL") or "INFO"},
    # Known, harmless messages of dependencies are dropped (webapp/quiet.py says why each is).
    **quiet.logging_filters(),
}

POLYPHONY_SETTINGS_ERRORS = list(env.errors)
