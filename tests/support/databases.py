"""Databases of a test's own on the session's MongoDB-protocol server, dropped when it is done."""

import contextlib
import uuid

from pymongo import MongoClient

from stack import processes


@contextlib.contextmanager
def own_database(server, prefix="test"):
    """The URI of a new database on `server` (its name is the URI's path), dropped on leaving."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    uri = f"mongodb://{processes.HOST}:{server.port}/{name}"
    try:
        yield uri
    finally:
        with MongoClient(uri, serverSelectionTimeoutMS=5000) as client:
            client.drop_database(name)
