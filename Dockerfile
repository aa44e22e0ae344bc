# One image for every role: the API (default command), `consume_activity` and `produce_activity`.
#   docker build -t activity-service .
#   docker run -p 8000:8000 activity-service                                  # API (gunicorn + uvicorn workers; migrates first)
#   docker run activity-service python manage.py consume_activity              # consumer
#   docker run activity-service python manage.py produce_activity --rate 5     # producer

# --- build: compile wheels and install them into a virtual environment ---------------------------
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Compilers live only in this stage, for any dependency without a prebuilt wheel.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

COPY requirements.txt /tmp/requirements.txt
RUN pip wheel --wheel-dir /wheels -r /tmp/requirements.txt \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --find-links /wheels -r /tmp/requirements.txt

# --- runtime: the virtual environment and the code, no compilers, not root ----------------------
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    PORT=8000

# tini as PID 1 passes SIGTERM on to Python, so consumers finish their batch and stop cleanly.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
# Code stays owned by root: the service user can read it, not change it.
COPY manage.py gunicorn.conf.py docker-entrypoint.sh ./
COPY activity_service ./activity_service
COPY logs ./logs
# Static files (DRF browsable API, Swagger UI assets) are collected once, into the image. The data
# folder belongs to the service user: without DATABASE_URL, Django's tables are a SQLite file there.
RUN python manage.py collectstatic --noinput \
    && mkdir -p .data && chown 10001:10001 .data

USER 10001:10001

# 8000: the API; 8081: its probes; 9102: its metrics (neither to be published); 9100, 9101: the consumer's and the
# producer's metrics and probes.
EXPOSE 8000 8081 9100 9101 9102

# On the API's probe port (API_PROBE_PORT), which no client reaches, so a flood of 8000 cannot fail it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('API_PROBE_PORT', '8081') + '/healthz', timeout=4)"]

# The entrypoint migrates Django's tables before the API starts (see the script).
ENTRYPOINT ["tini", "--", "./docker-entrypoint.sh"]
CMD ["gunicorn", "--config", "gunicorn.conf.py", "activity_service.asgi:application"]
