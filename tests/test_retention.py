"""ACTIVITY_LOG_RETENTION_DAYS: the TTL index the consumer keeps in step with the setting at every start."""

import pytest

from logs.storage.preparation import prepare_storage
from logs.storage.retention import RETENTION_INDEX_NAME, SECONDS_PER_DAY, apply_retention

pytestmark = pytest.mark.integration


def retention_index(collection):
    return {index["name"]: index for index in collection.list_indexes()}.get(RETENTION_INDEX_NAME)


def test_retention_is_a_ttl_index_on_the_event_timestamp_created_changed_and_dropped_with_the_setting(
        database_settings, activity_collection):
    database_settings.ACTIVITY_LOG_RETENTION_DAYS = 365
    prepare_storage()
    index = retention_index(activity_collection)
    assert dict(index["key"]) == {"timestamp": 1} and index["expireAfterSeconds"] == 365 * SECONDS_PER_DAY

    database_settings.ACTIVITY_LOG_RETENTION_DAYS = 30
    prepare_storage()
    assert retention_index(activity_collection)["expireAfterSeconds"] == 30 * SECONDS_PER_DAY

    database_settings.ACTIVITY_LOG_RETENTION_DAYS = 0
    prepare_storage()
    assert retention_index(activity_collection) is None


def test_without_a_retention_setting_no_ttl_index_is_created(database_settings, activity_collection):
    assert database_settings.ACTIVITY_LOG_RETENTION_DAYS == 0
    prepare_storage()
    assert retention_index(activity_collection) is None
    assert all("expireAfterSeconds" not in index for index in activity_collection.list_indexes())


def test_applying_the_same_retention_again_leaves_the_index_as_it_is(activity_collection):
    apply_retention(activity_collection, days=7)
    before = retention_index(activity_collection)
    apply_retention(activity_collection, days=7)
    assert retention_index(activity_collection) == before
