#!/bin/sh
# Start the production stack's Redis (the Feast online store) with two users:
#   default   REDIS_PASSWORD          everything: Airflow's materialization writes features
#   serving   REDIS_SERVING_PASSWORD  read commands only: the Ray head looks features up
# The configuration goes to redis-server on standard input, so no password is on a command line
# (`ps`). Extra arguments are passed on (tests add --port, --bind, --dir).
set -eu
: "${REDIS_PASSWORD:?set REDIS_PASSWORD}"
: "${REDIS_SERVING_PASSWORD:?set REDIS_SERVING_PASSWORD}"
printf 'requirepass %s\nuser serving on >%s ~* resetchannels -@all +@read +@connection -@dangerous\n' \
  "$REDIS_PASSWORD" "$REDIS_SERVING_PASSWORD" | exec redis-server - "$@"
