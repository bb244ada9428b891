#!/bin/sh
# Create the Chorus application database and its own role, on first start.
#
# The postgres image runs the scripts in /docker-entrypoint-initdb.d once,
# when the data volume is empty; docker-compose.yml mounts this folder there.
# The same server also holds Temporal's databases (temporal,
# temporal_visibility), which Temporal's auto-setup creates as POSTGRES_USER.
# Chorus gets a separate, unprivileged role so it cannot touch them.
#
# The password is bound as a psql variable (:'chorus_password'), so any
# character is safe here; in DATABASE_URL it must be URL-encoded.
#
# Environment: POSTGRES_USER (superuser, set by the postgres image),
# CHORUS_DB_PASSWORD (required), CHORUS_DB_USER and CHORUS_DB_NAME (default: chorus).

: "${CHORUS_DB_PASSWORD:?CHORUS_DB_PASSWORD must be set to create the Chorus database role}"

psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v chorus_user="${CHORUS_DB_USER:-chorus}" \
  -v chorus_db="${CHORUS_DB_NAME:-chorus}" \
  -v chorus_password="$CHORUS_DB_PASSWORD" <<'SQL'
CREATE ROLE :"chorus_user" LOGIN PASSWORD :'chorus_password';
CREATE DATABASE :"chorus_db" OWNER :"chorus_user";
REVOKE ALL ON DATABASE :"chorus_db" FROM PUBLIC;
SQL
