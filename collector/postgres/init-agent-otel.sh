#!/bin/sh
# PostgreSQL init script (docker-entrypoint-initdb.d): the agent-otel database, the role the
# collector writes with, and a read-only role for Grafana's SQL panels.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v writer_password="$AGENT_OTEL_DB_PASSWORD" -v reader_password="$AGENT_OTEL_READER_PASSWORD" <<'SQL'
CREATE ROLE agent_otel LOGIN PASSWORD :'writer_password';
CREATE ROLE agent_otel_reader LOGIN PASSWORD :'reader_password';
CREATE DATABASE agent_otel OWNER agent_otel;
\connect agent_otel
GRANT CONNECT ON DATABASE agent_otel TO agent_otel_reader;
GRANT USAGE ON SCHEMA public TO agent_otel_reader;
-- Tables, views and daily partitions the collector creates later are readable too.
ALTER DEFAULT PRIVILEGES FOR ROLE agent_otel IN SCHEMA public GRANT SELECT ON TABLES TO agent_otel_reader;
ALTER ROLE agent_otel_reader SET default_transaction_read_only = on;
ALTER ROLE agent_otel_reader SET statement_timeout = '30s';
SQL
