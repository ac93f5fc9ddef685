#!/bin/sh
# Runs once, when the postgres volume is first initialised (/docker-entrypoint-initdb.d):
# one database per store, owned by the stack's user. MLflow and Prefect create their own
# tables; the monitoring database gets its schema from the stack's Alembic migrations.
set -eu
for db in ${MLOPS_DATABASES:-mlflow prefect monitoring}; do
  echo "init-databases: creating database $db"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
       -c "CREATE DATABASE \"$db\" OWNER \"$POSTGRES_USER\""
done
