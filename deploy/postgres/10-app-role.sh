#!/bin/sh
# First start of the postgres container only (docker-entrypoint-initdb.d): the shop's own
# role and database. The app connects as this role, not as the superuser: it owns the
# shop database (migrations create and alter its tables) and nothing else; it cannot
# create roles or databases, read other databases, or run server-side programs.
set -eu
: "${SHOP_DB_PASSWORD:?set SHOP_DB_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v app_password="$SHOP_DB_PASSWORD" <<'SQL'
CREATE ROLE shop LOGIN PASSWORD :'app_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    CONNECTION LIMIT 200;
CREATE DATABASE shop OWNER shop;
REVOKE ALL ON DATABASE shop FROM PUBLIC;
-- The maintenance database is for the operator; the app has no business there.
REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE shop TO shop;
-- To name the transaction that holds the outbox horizon (and every view) back:
-- without it, another role's session shows no state nor transaction start.
GRANT pg_read_all_stats TO shop;
SQL
# In PostgreSQL 15+ the public schema belongs to the database owner (shop): nothing
# more to grant for migrations. Nobody else may create objects there.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname shop <<'SQL'
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
