#!/bin/sh
# The production stack's databases, one role each (docker-compose.yaml mounts this file into the
# postgres image's /docker-entrypoint-initdb.d/, which runs it once, on an empty volume):
#
#   role     database             password variable      used by
#   airflow  airflow              AIRFLOW_DB_PASSWORD    the Airflow services (metadata)
#   mlflow   mlflow, mlflow_auth  MLFLOW_DB_PASSWORD     the MLflow server (tracking, users)
#   feast    feast                FEAST_DB_PASSWORD      Airflow and the Ray head (SQL registry)
#
# Each role owns its databases and can connect to nothing else (CONNECT is revoked from PUBLIC);
# none is a superuser. Safe to run again: a missing role or database is created, every role's
# password is set from the environment (rotate: change .env, then
#   docker compose exec postgres sh /docker-entrypoint-initdb.d/10-airloop-roles.sh).
# psql reads the connection from the environment (PGHOST, PGPORT, PGUSER; the image's
# entrypoint: the local socket as POSTGRES_USER).
set -eu
: "${AIRFLOW_DB_PASSWORD:?set AIRFLOW_DB_PASSWORD}"
: "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD}"
: "${FEAST_DB_PASSWORD:?set FEAST_DB_PASSWORD}"

airloop_role() {  # role password database...
  role=$1 password=$2
  shift 2
  psql -v ON_ERROR_STOP=1 -X -q --username "${POSTGRES_USER:-${PGUSER:-postgres}}" --dbname postgres \
    -v role="$role" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')
\gexec
ALTER ROLE :"role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'password';
SQL
  for database in "$@"; do
    psql -v ON_ERROR_STOP=1 -X -q --username "${POSTGRES_USER:-${PGUSER:-postgres}}" --dbname postgres \
      -v role="$role" -v db="$database" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')
\gexec
ALTER DATABASE :"db" OWNER TO :"role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"role";
SQL
  done
  echo "postgres-init: role $role owns $*"
}

airloop_role airflow "$AIRFLOW_DB_PASSWORD" airflow
airloop_role mlflow "$MLFLOW_DB_PASSWORD" mlflow mlflow_auth
airloop_role feast "$FEAST_DB_PASSWORD" feast
