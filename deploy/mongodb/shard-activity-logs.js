// Shard the activity-log collection by user. Run once per cluster, against a mongos, from the repository
// root, as a user with the clusterManager role (or root):
//
//   mongosh "mongodb://ADMIN@mongos.example.net:27017/activity_logs" --file deploy/mongodb/shard-activity-logs.js
//
// RETENTION_DAYS=365 in the environment also creates the retention TTL index (the consumer creates or
// changes it at its next start anyway, from ACTIVITY_LOG_RETENTION_DAYS; creating it here builds it
// before the collection is spread over the shards).
//
// The order matters: (1) sharding is enabled for the database; (2) the application's indexes and the
// index that supports the shard key exist, because sh.shardCollection refuses a collection that holds
// documents but no such index; (3) the collection is sharded. Every step can be run again: enabling
// sharding twice and creating an existing index are no-ops, and sharding an already sharded collection
// with the same key is accepted. Upgrade a collection of the previous layout first
// (python manage.py migrate_activity_logs): its unique eventId index cannot exist on a collection sharded by user.

const fs = require("fs");

const layout = JSON.parse(fs.readFileSync(process.env.INDEXES_FILE || "deploy/mongodb/activity_logs.indexes.json", "utf8"));
const namespace = `${db.getName()}.${layout.collection}`;
const indexes = layout.indexes.slice();
const retentionDays = Number(process.env.RETENTION_DAYS || 0);
if (retentionDays > 0) {
  indexes.push({name: "retention_ttl", key: {timestamp: 1}, expireAfterSeconds: retentionDays * 24 * 60 * 60});
}

print(`1/3 enable sharding for database ${db.getName()}`);
sh.enableSharding(db.getName());

print(`2/3 create ${indexes.length} indexes on ${namespace}: ${indexes.map((index) => index.name).join(", ")}`);
const created = db.runCommand({createIndexes: layout.collection, indexes: indexes, writeConcern: {w: "majority"}});
if (created.ok !== 1) {
  throw new Error(`createIndexes failed: ${created.errmsg}`);
}

print(`3/3 shard ${namespace} on ${JSON.stringify(layout.shardKey)}`);
sh.shardCollection(namespace, layout.shardKey);

printjson(db.getSiblingDB("config").collections.findOne({_id: namespace}, {key: 1, unique: 1}));
print(`${namespace} is sharded; the balancer spreads its chunks over the shards (sh.status() shows them)`);
