"""deploy/mongodb/: the operator's sharding script agrees with the application's own layout."""

import json
import shutil
import subprocess

import pytest

from logs.storage.documents import ActivityLog
from logs.storage.selectors import activity_log_list
from tests.support import ROOT

DEPLOY = ROOT / "deploy" / "mongodb"
LAYOUT = json.loads((DEPLOY / "activity_logs.indexes.json").read_text())
SHARD_KEY_INDEX = "shard_key"


def application_indexes():
    return {spec["name"]: dict(spec["fields"]) for spec in ActivityLog._meta["index_specs"]}


def test_the_script_creates_the_application_indexes_and_one_for_the_shard_key():
    scripted = {index["name"]: index["key"] for index in LAYOUT["indexes"]}
    assert scripted.pop(SHARD_KEY_INDEX) == LAYOUT["shardKey"]
    assert scripted == application_indexes()
    assert LAYOUT["collection"] == ActivityLog._get_collection_name()


def test_no_index_but_id_is_unique_so_the_collection_can_be_sharded_by_user():
    assert not any(spec.get("unique") for spec in ActivityLog._meta["index_specs"])


@pytest.mark.integration
@pytest.mark.parametrize("filters", [{"user_id": "user-1"}, {"user_id": "user-1", "action": "send"},
                                     {"user_id": "user-1", "timestamp__gte": "2026-01-01T00:00:00Z"}])
def test_every_query_naming_a_user_names_it_by_equality_so_it_is_routed_to_that_users_shard(database_settings, filters):
    assert activity_log_list(filters=filters).query["userId"] == "user-1"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_sharding_script_is_valid_javascript():
    subprocess.run(["node", "--check", str(DEPLOY / "shard-activity-logs.js")], check=True)


@pytest.mark.integration
def test_indexes_created_by_the_script_are_the_ones_the_consumer_expects(activity_collection):
    # mongoengine creates its indexes with `background: false`; SecantusDB counts that option when it compares
    # an index with an existing one of the same name (MongoDB ignores it since 4.2), so the script's are given it here.
    indexes = [{**index, "background": False} for index in LAYOUT["indexes"]]
    activity_collection.database.command("createIndexes", activity_collection.name, indexes=indexes)
    ActivityLog.ensure_indexes()  # raises IndexOptionsConflict if a name or a key differed
    names = {index["name"] for index in activity_collection.list_indexes()}
    assert names == {"_id_", *application_indexes(), SHARD_KEY_INDEX}
