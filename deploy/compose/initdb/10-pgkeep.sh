#!/bin/sh
# Run once by the postgres image, when its volume is new: a database to back up (shop,
# owned by an ordinary role) and pgkeep's own role, no superuser, made exactly as
# docs/operations.md#least-privilege says (tests/deploy/test_compose.py keeps it so).
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v pgkeep_password="$PGKEEP_DB_PASSWORD" <<'SQL'
CREATE ROLE shop_owner NOLOGIN;
CREATE DATABASE shop OWNER shop_owner;
CREATE ROLE pgkeep LOGIN PASSWORD :'pgkeep_password' NOSUPERUSER CREATEDB CREATEROLE;
GRANT pg_read_all_data, pg_signal_backend TO pgkeep;
CREATE DATABASE pgkeep OWNER pgkeep;
CREATE ROLE pgkeep_loaders NOLOGIN;
GRANT pgkeep_loaders TO pgkeep WITH ADMIN OPTION;
GRANT shop_owner TO pgkeep WITH ADMIN OPTION;
SQL
