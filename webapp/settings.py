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

from webapp.env import EnvReader

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
    "webapp",
    "ratings",
    "generation",
]

MIDDLEWARE = [
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
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "ratings:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
# Rater pages are translated; admins and researchers work in English.
LANGUAGES = [("en", "English"), ("es", "Español")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# The study's texts (consent, questions, cohort names, prompts) per language: a missing
# translation falls back to the text as written, in the default language.
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
CELERY_BEAT_SCHEDULE = {
    "requeue-stuck-images": {
        "task": "generation.tasks.requeue_stuck_images",
        "schedule": env.int("POLYPHONY_STUCK_CHECK_SECONDS", 300, minimum=1),
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
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL") or "INFO"},
}

POLYPHONY_SETTINGS_ERRORS = list(env.errors)
