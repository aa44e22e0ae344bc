"""The MongoDB connection, registered with mongoengine from MONGODB_URI."""

import mongoengine
from django.conf import settings


def connect_database():
    """Register the default connection; the database name comes from the URI path."""
    mongoengine.disconnect()
    mongoengine.connect(
        host=settings.MONGODB_URI,
        tz_aware=True,
        serverSelectionTimeoutMS=settings.MONGODB_SERVER_SELECTION_TIMEOUT_MS,
        connectTimeoutMS=settings.MONGODB_CONNECT_TIMEOUT_MS,
        uuidRepresentation="standard",
        # Start no monitor threads until the first query: commands that never touch the database
        # (the producer) exit promptly, and a pre-forking server gets a fresh client per worker.
        connect=False,
    )
