"""Django itself: security, apps, middleware, logging. DEBUG is off unless asked for."""

import re
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent

DEBUG = env_bool("DJANGO_DEBUG", False)
# The fallback only serves local development (runserver, tests). It is published here, so it carries Django's
# `django-insecure-` prefix: `check --deploy` flags it and the production server refuses it (gunicorn.conf.py).
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "django-insecure-development-key-published-in-the-repository")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "axes",  # failed logins locked out per username and address
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's assets, served by the app itself (no CDN)
    "logs",
]

MIDDLEWARE = [
    # First, so /metrics counts every answer Django gives and its full latency.
    "activity_service.request_metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Outside CommonMiddleware, whose DisallowedHost 400 would otherwise leave without this header.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Inside the security headers, outside everything that may answer an HTML error (CommonMiddleware's
    # disallowed Host, CSRF, a plain view's 405): those answers become JSON too.
    "logs.api.errors.JsonErrorsMiddleware",
    # Serves the browsable API's and Swagger UI's static files with DEBUG off, without a separate server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # The browsable API's login (/api-auth/login/) keeps the account in a session cookie.
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # DRF's views are exempt and check CSRF themselves for session logins; this covers every other view.
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Answers a locked-out login with AXES_LOCKOUT_CALLABLE (django-axes wants it last).
    "axes.middleware.AxesMiddleware",
]

# What only a browser's requests use: a request to /user-logs with `Authorization: Token` that accepts no HTML
# is served without these (activity_service/wsgi.py).
BROWSER_ONLY_MIDDLEWARE = frozenset({
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "axes.middleware.AxesMiddleware",
})

# django-axes checks each password login first: FAILED_LOGIN_LIMIT wrong passwords for one username from one
# address lock that pair out for LOGIN_LOCKOUT_SECONDS (429, logged by axes); an operator lifts it with
# `manage.py axes_reset_username` (docs/operations.md "Runbook"). The address is REMOTE_ADDR, which the
# server has already resolved through the trusted proxies (API_TRUSTED_PROXIES).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
API_FAILED_LOGIN_LIMIT = env_int("API_FAILED_LOGIN_LIMIT", 5, minimum=1)
API_LOGIN_LOCKOUT_SECONDS = env_int("API_LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
# Requests with an unknown token from one address within the lockout time before that address gets 429s.
API_BAD_TOKEN_LIMIT = env_int("API_BAD_TOKEN_LIMIT", 20, minimum=1)
AXES_FAILURE_LIMIT = API_FAILED_LOGIN_LIMIT
AXES_COOLOFF_TIME = timedelta(seconds=API_LOGIN_LOCKOUT_SECONDS)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_CALLABLE = "logs.api.authentication.login_locked_out"
AXES_RESET_ON_SUCCESS = True
CSRF_FAILURE_VIEW = "logs.api.errors.csrf_failure"

ROOT_URLCONF = "activity_service.urls"
WSGI_APPLICATION = "activity_service.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": [
            "django.template.context_processors.request",
            "django.contrib.auth.context_processors.auth",
        ]},
    }
]

# Activity logs live in MongoDB (see pipeline.py); Django's own tables (accounts, permissions, API
# tokens, sessions) live here. The SQLite file serves local development; deployments use PostgreSQL.
LOCAL_DATABASE = BASE_DIR / ".data" / "django.sqlite3"
# Connections are kept for a minute (checked before reuse): a token check that misses the cache
# should not pay for a new PostgreSQL connection.
DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL", f"sqlite:///{LOCAL_DATABASE}"),
                                              conn_max_age=60, conn_health_checks=True)}
if DATABASES["default"]["NAME"] == str(LOCAL_DATABASE):
    LOCAL_DATABASE.parent.mkdir(exist_ok=True)  # SQLite creates the file, not its folder
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Found in the installed apps at startup, so `runserver` and gunicorn serve assets without `collectstatic`.
WHITENOISE_USE_FINDERS = True

# Requests per token (or per signed-in account) per second, minute, hour or day, counted per process.
API_THROTTLE_RATE = env_str("API_THROTTLE_RATE", "1200/minute")
if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", API_THROTTLE_RATE):
    raise ImproperlyConfigured(f"API_THROTTLE_RATE={API_THROTTLE_RATE!r} must look like 1200/minute (s, m, h or d)")

# How long an API process trusts a token it has checked (see logs/api/authentication.py); 0: check every request.
API_TOKEN_CACHE_SECONDS = env_int("API_TOKEN_CACHE_SECONDS", 10, minimum=0)

# Where DRF's login and logout views send a browser that did not say where it came from.
LOGIN_REDIRECT_URL = "/user-logs"
LOGOUT_REDIRECT_URL = "/api-auth/login/"

REST_FRAMEWORK = {
    # Token first: its `WWW-Authenticate: Token` header is what makes a missing or bad credential a 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "logs.api.authentication.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Secure by default: a new view is closed until it says otherwise (docs/contract.md "Access control").
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Per account, so per token (one token per account); an over-eager client gets 429 with Retry-After.
    "DEFAULT_THROTTLE_CLASSES": ["logs.api.throttling.AccountRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": API_THROTTLE_RATE},
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "logs.api.negotiation.ApiContentNegotiation",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Activity log API",
    "DESCRIPTION": "Read-only access to stored user activity logs (send, receive, balance inquiry), newest first.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # The schema and the docs page are public; Swagger UI's "Authorize" takes `Token <key>` and keeps it.
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True},
    "REDOC_DIST": "SIDECAR",
}

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False

# Behind a TLS-terminating proxy or ingress: DJANGO_SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto (the proxy must
# set it, overwriting what clients send) makes `https` requests secure, so the settings below can be on.
_PROXY_SSL_HEADER = env_str("DJANGO_SECURE_PROXY_SSL_HEADER", "")
SECURE_PROXY_SSL_HEADER = ((f"HTTP_{_PROXY_SSL_HEADER.upper().replace('-', '_')}", "https") if _PROXY_SSL_HEADER
                           else None)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
# Probes and scrapers speak plain HTTP to the pod, not through the TLS proxy.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
# "json": one JSON object per line, for log collectors; "plain": for people reading a terminal.
LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} must be plain or json")
LOGGING_CONFIG = "activity_service.log_formats.configure_logging"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "activity_service.log_formats.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # kafka-python logs every failed connection attempt; the commands report outages themselves,
        # once and with what to do, so the client's own log is for debugging only.
        "kafka": {"level": env_str("KAFKA_CLIENT_LOG_LEVEL", "CRITICAL")},
        "pymongo": {"level": "WARNING"},
        # Every API read is audited, whatever LOG_LEVEL quiets elsewhere.
        "logs.audit": {"level": "INFO"},
        # Failed logins and lockouts (django-axes) and token lockouts are security events, logged whatever LOG_LEVEL.
        "axes": {"level": "WARNING"},
        "logs.api.authentication": {"level": "WARNING"},
    },
}
