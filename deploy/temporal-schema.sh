#!/bin/sh
# Temporal's PostgreSQL schema, set up the way Temporal documents for its production images: the
# server image (temporalio/server) has no schema logic; the admin-tools image carries
# temporal-sql-tool and the versioned schema files under /etc/temporal/schema. Run by the
# temporal-schema job in docker-compose.yml before the server starts.
#
# Idempotent, so it runs on every `docker compose up`: `create` leaves an existing database alone,
# `setup-schema -v 0.0` keeps a newer recorded version, `update-schema` applies only the versions
# not applied yet. After bumping the images it is the schema upgrade step (one minor version at a
# time, as Temporal's upgrade notes require).
#
# Environment: POSTGRES_SEEDS, DB_PORT, POSTGRES_USER; SQL_PASSWORD (read by temporal-sql-tool).
set -eu

SCHEMA=/etc/temporal/schema/postgresql/v12

sql_tool() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" "$@"
}

# database name, then its schema folder (the server's defaults: DBNAME, VISIBILITY_DBNAME)
for pair in temporal:temporal temporal_visibility:visibility; do
  db=${pair%%:*}
  dir=${pair#*:}
  echo "temporal-schema: $db"
  sql_tool --db "$db" create
  sql_tool --db "$db" setup-schema -v 0.0
  sql_tool --db "$db" update-schema -d "$SCHEMA/$dir/versioned"
done
echo "temporal-schema: done"
