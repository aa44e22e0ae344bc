"""WSGI entry point for gunicorn and other WSGI servers."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "activity_service.settings")

application = get_wsgi_application()

from logs.storage.layout import refuse_to_serve_outdated_layout  # noqa: E402  (needs the app registry set up above)

refuse_to_serve_outdated_layout()
