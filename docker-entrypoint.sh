#!/bin/sh
# The image's entrypoint (after tini). Before the API serves, Django's own tables (accounts, API tokens,
# sessions) are brought up to date on DATABASE_URL. Replicas starting together on a fresh database may
# race on the first migration; the one that loses tries again once the other has finished.
# The consumer and the producer never touch those tables and start at once.
set -e
if [ "$1" = "gunicorn" ]; then
    python manage.py migrate --noinput || { sleep 5; python manage.py migrate --noinput; }
fi
exec "$@"
