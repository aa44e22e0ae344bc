"""Upgrading a database written by the previous version, and refusing to run on one that is not upgraded.

The previous version stored each log with a generated ObjectId `_id`, the event id in `eventId` and a
unique index on it; `previous_layout_database` writes exactly that shape with pymongo, as that version did.
"""

import itertools
import signal
from datetime import datetime, timezone

import pytest
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, MongoClient

from logs.pipeline.generator import generate_activity
from logs.storage.documents import ActivityLog
from logs.storage.layout import LayoutOutdated, check_layout
from logs.storage.migration import Progress, migrate_activity_logs, upgrade_collections
from logs.storage.preparation import prepare_storage
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

COLLECTION = "activity_logs"
INGESTED_AT = datetime(2026, 11, 20, 8, 30, tzinfo=timezone.utc)


def previous_layout_document(event, offset):
    """One log as the previous version's consumer stored it."""
    document = {"_id": ObjectId(), "eventId": event.event_id, "userId": event.user_id, "action": event.action,
                "timestamp": event.timestamp, "kafkaPartition": offset % 3, "kafkaOffset": offset,
                "ingestedAt": INGESTED_AT}
    optional = {"amountCents": event.amount_cents, "currency": event.currency,
                "counterpartyId": event.counterparty_id, "transferId": event.transfer_id,
                "balanceCents": event.balance_cents}
    document.update({field: value for field, value in optional.items() if value is not None})
    return document


def write_previous_layout(database, count):
    """The previous version's collection: its documents and its five indexes; returns the events by id."""
    events = list(itertools.islice(generate_activity(users=30, seed=11), count))
    collection = database[COLLECTION]
    collection.create_index([("eventId", ASCENDING)], unique=True, name="eventId_1")
    newest = [("timestamp", DESCENDING), ("_id", DESCENDING)]
    collection.create_index(newest, name="newest_first")
    collection.create_index([("userId", ASCENDING), *newest], name="user_newest_first")
    collection.create_index([("action", ASCENDING), *newest], name="action_newest_first")
    collection.create_index([("userId", ASCENDING), ("action", ASCENDING), *newest], name="user_action_newest_first")
    collection.insert_many([previous_layout_document(event, offset) for offset, event in enumerate(events)])
    return {event.event_id: event for event in events}


@pytest.fixture
def database(mongodb_uri, database_settings):
    """The test's database, also the one this process's ActivityLog connection (and so check_layout) uses."""
    client = MongoClient(mongodb_uri, tz_aware=True, uuidRepresentation="standard")
    yield client.get_default_database()
    client.close()


def assert_upgraded(database, events):
    """Every log is stored once, keyed by its event id, equal to its event; nothing of the old layout is left."""
    collection = database[COLLECTION]
    documents = list(collection.find())
    assert len(documents) == len(events)
    for document in documents:
        assert str(document["_id"]) == ActivityLog._from_son(document).to_event().event_id
        assert ActivityLog._from_son(document).to_event() == events[str(document["_id"])]
        assert document["ingestedAt"] == INGESTED_AT
    index_names = {index["name"] for index in collection.list_indexes()}
    assert "eventId_1" not in index_names
    assert {spec.get("name") for spec in ActivityLog._meta["index_specs"]} <= index_names
    side, progress = upgrade_collections(database, COLLECTION)
    assert {side.name, progress.name}.isdisjoint(database.list_collection_names())
    check_layout(collection)
    prepare_storage()  # the consumer's start: it finds the indexes as its own


def test_a_database_written_by_the_previous_version_is_upgraded_by_the_command(manage, database):
    events = write_previous_layout(database, 250)
    with pytest.raises(LayoutOutdated):
        check_layout(database[COLLECTION])

    result = manage.run("migrate_activity_logs", "--batch-size", "100")

    assert result.returncode == 0, result.stdout + result.stderr
    assert_upgraded(database, events)


def test_running_the_migration_again_changes_nothing(manage, database):
    events = write_previous_layout(database, 120)
    assert manage.run("migrate_activity_logs").returncode == 0
    before = list(database[COLLECTION].find().sort("_id"))

    again = manage.run("migrate_activity_logs")

    assert again.returncode == 0, again.stdout + again.stderr
    assert list(database[COLLECTION].find().sort("_id")) == before
    assert_upgraded(database, events)


def test_an_interrupted_migration_leaves_the_old_collection_serving_and_resumes_where_it_stopped(database):
    events = write_previous_layout(database, 230)
    seen = []

    def stop_after_two_batches(progress):
        seen.append(progress)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrate_activity_logs(batch_size=50, on_progress=stop_after_two_batches)
    assert database[COLLECTION].count_documents({}) == 230
    with pytest.raises(LayoutOutdated):
        check_layout(database[COLLECTION])

    resumed = []
    migrate_activity_logs(batch_size=50, on_progress=resumed.append)

    assert resumed[0] == Progress(copied=150, total=230, resumed_from=100)
    assert resumed[-1].copied == 230
    assert_upgraded(database, events)


def test_a_migration_killed_mid_copy_completes_on_the_next_run(manage, database):
    events = write_previous_layout(database, 1000)
    _, progress = upgrade_collections(database, COLLECTION)
    child = manage.start("migrate_activity_logs", "--batch-size", "5")
    wait_for(lambda: progress.find_one({"_id": "position", "copied": {"$gte": 20}}), timeout=60,
             message="the migration to record its first batches")
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert database[COLLECTION].count_documents({}) == 1000  # the old collection is untouched until the swap

    result = manage.run("migrate_activity_logs", "--batch-size", "500")

    assert result.returncode == 0, result.stdout + result.stderr
    assert_upgraded(database, events)


def test_the_consumer_refuses_to_start_on_the_previous_layout_with_one_line_saying_what_to_run(manage, database):
    write_previous_layout(database, 10)
    before = list(database[COLLECTION].find().sort("_id"))

    result = manage.run("consume_activity", "--idle-timeout", "1", "--metrics-port", "0")

    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert "migrate_activity_logs" in line
    assert list(database[COLLECTION].find().sort("_id")) == before


def test_the_api_refuses_to_start_on_the_previous_layout_with_one_line_saying_what_to_run(manage, database):
    write_previous_layout(database, 10)

    result = manage.run("runserver", "127.0.0.1:0", "--noreload", timeout=60)

    assert result.returncode == 3
    [line] = [line for line in result.stderr.splitlines() if "refusing" in line]
    assert "migrate_activity_logs" in line


def test_readiness_reports_the_previous_layout_until_it_is_upgraded(database, client):
    write_previous_layout(database, 10)
    response = client.get("/readyz")
    assert response.status_code == 503 and "migrate_activity_logs" in response.json()["reason"]

    migrate_activity_logs()

    assert client.get("/readyz").status_code == 200
